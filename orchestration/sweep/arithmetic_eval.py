"""Post-training evaluation on held-out synthetic arithmetic problems: the quickstart sweep's metric.

A training-hook (``orchestration/training/hooks.py`` contract) that the evaluation package does not ship
yet: it generates greedy answers for problems the trial never trained on, with the evaluation package's
batched ``generate`` and the reference numeric rule (last number, within 0.001), sharded by rank.
Options: ``size`` (problems, default 100), ``train_size`` and ``data_seed`` (the training set to hold
out: ``data.size`` and ``data.seed`` of the trial), ``max_new_tokens`` (default 8), ``batch_size``,
``generations_path`` (rank 0 writes every record there; the sweep sets it per trial).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from orchestration.data.arithmetic import arithmetic_test_records
from orchestration.evaluation.generation import GenerationConfig, alpaca_prompts, generate
from orchestration.evaluation.math_scoring import extract_number, is_correct, math_metrics

DATASET = "arithmetic"
NUMERIC_RULES = "gsm8k"  # the reference numeric scoring rule


def arithmetic_hook(
    model: torch.nn.Module,
    tokenizer,
    options: Mapping,
    *,
    rank: int,
    world_size: int,
    device: torch.device,
) -> dict[str, float]:
    problems = arithmetic_test_records(
        int(options.get("size", 100)), int(options["data_seed"]), int(options["train_size"])
    )
    indices = list(range(rank, len(problems), world_size))
    mine = [problems[i] for i in indices]
    config = GenerationConfig.math(
        max_new_tokens=int(options.get("max_new_tokens", 8)), batch_size=int(options.get("batch_size", 16))
    )
    outputs = generate(model, tokenizer, alpaca_prompts(mine), config, progress=False, desc=DATASET)
    records = [
        {
            "task": "math",
            "dataset": DATASET,
            "index": index,
            "instruction": problem["instruction"],
            "answer": problem["answer"],
            "output": completion,
            "prediction": extract_number(completion),
            "correct": is_correct(NUMERIC_RULES, completion, problem["answer"]),
        }
        for index, problem, (completion,) in zip(indices, mine, outputs, strict=True)
    ]
    if world_size > 1:
        import torch.distributed as dist

        parts: list[list[dict] | None] = [None] * world_size
        dist.all_gather_object(parts, records)
        records = sorted((r for part in parts for r in part or []), key=lambda r: r["index"])
    if rank == 0 and options.get("generations_path"):
        from orchestration.evaluation.benchmarks import write_jsonl

        write_jsonl(options["generations_path"], records)
    return {key.removeprefix("eval/"): value for key, value in math_metrics(records).items()}
