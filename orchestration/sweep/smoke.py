"""The ``smoke`` trial entry: a seconds-long, in-process fine-tune that exercises a sweep's whole plumbing.

It trains the trial's real adapter (comol or PEFT LoRA, exactly as configured) on the trial's real base
model, in the trial's own process, on a synthetic next-token task that needs no tokenizer: arithmetic
progressions of token ids (``a, a+d, a+2d, …`` mod vocab). It evaluates next-token accuracy on held-out
progressions, greedy-generates continuations, and saves the adapter in PEFT format. Use it to check a
spec, a cluster or a tracking server in seconds (``entry: smoke``), and in tests of the sweep logic,
before paying for TorchTrainer start-up (~20 s per trial on a CPU).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch

from orchestration.sweep.space import TrialPlan
from orchestration.sweep.trainable import TrialOutcome
from orchestration.tracking import schema
from orchestration.tracking.writer import TrialRecorder

SEQ_LEN = 16
EVAL_SEQUENCES = 64
GENERATIONS = 4
HELD_OUT_SEED = 1_000_003  # eval progressions come from a generator no training seed reaches
# The trial's own work (load, inject, train, evaluate, generate, save), without its reporting to MLflow and Tune:
# what the trial would cost with no sweep around it, so a benchmark can tell the sweep's overhead from it.
METRIC_COMPUTE_TIME = "time/compute_s"


def progressions(count: int, vocab: int, generator: torch.Generator, length: int = SEQ_LEN) -> torch.Tensor:
    start = torch.randint(0, vocab, (count, 1), generator=generator)
    stride = torch.randint(1, 4, (count, 1), generator=generator)
    return (start + stride * torch.arange(length)) % vocab


def _report_step(recorder: TrialRecorder, metrics: dict[str, float], step: int) -> float:
    """Log a step to MLflow and report it to Tune; returns the seconds that took (not the trial's compute)."""
    from ray import tune

    started = time.perf_counter()
    recorder.log_step(metrics, step)
    tune.report({**metrics, "step": step})
    return time.perf_counter() - started


@torch.no_grad()
def _evaluate(model: torch.nn.Module, vocab: int) -> tuple[float, float]:
    """(loss, next-token accuracy from position 2 on, where the stride is determined) on held-out data."""
    data = progressions(EVAL_SEQUENCES, vocab, torch.Generator().manual_seed(HELD_OUT_SEED))
    out = model(input_ids=data, labels=data)
    predicted = out.logits[:, 1:-1].argmax(-1)
    accuracy = (predicted == data[:, 2:]).float().mean().item()
    return float(out.loss), accuracy


@torch.no_grad()
def _generate(model: torch.nn.Module, vocab: int, path: Path) -> Path:
    data = progressions(GENERATIONS, vocab, torch.Generator().manual_seed(HELD_OUT_SEED + 1))
    prompt = data[:, :4]
    out = model.generate(
        input_ids=prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=SEQ_LEN - 4,
        do_sample=False,
        pad_token_id=0,
    )
    with path.open("w") as handle:
        for row, expected in zip(out.tolist(), data.tolist(), strict=True):
            completion = row[4:]
            record = {"prompt_ids": row[:4], "completion_ids": completion, "expected_ids": expected[4:]}
            record["correct"] = completion == expected[4 : 4 + len(completion)]
            handle.write(json.dumps(record) + "\n")
    return path


def run_smoke_trial(plan: TrialPlan, recorder: TrialRecorder, workdir: Path) -> TrialOutcome:
    from transformers.utils import logging as hf_logging

    from comol import after_backward, aux_loss, inject_adapter, save_adapter
    from orchestration.models import load_model

    hf_logging.disable_progress_bar()
    body_started = time.perf_counter()
    reporting = 0.0
    config = plan.train
    torch.manual_seed(config.training.seed)
    torch.set_num_threads(1)
    model = load_model(config.model)
    adapter_config = config.adapter_config()
    inject_adapter(model, adapter_config)
    model.train()
    vocab = model.config.vocab_size
    steps = config.training.max_steps or 10
    batch = config.training.batch_size
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.training.lr, weight_decay=config.training.weight_decay)
    generator = torch.Generator().manual_seed(config.training.seed)
    started = time.perf_counter()
    window = time.perf_counter()
    last_metrics: dict[str, float] = {}
    for step in range(1, steps + 1):
        data = progressions(batch, vocab, generator)
        loss = model(input_ids=data, labels=data).loss + aux_loss(model)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}")
        optimizer.zero_grad()
        loss.backward()
        after_backward(model)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, config.training.max_grad_norm or float("inf"))
        optimizer.step()
        if step % config.logging.log_every == 0 or step == steps:
            now = time.perf_counter()
            metrics = {
                "train/loss": loss.item(),
                "train/lr": config.training.lr,
                "train/grad_norm": float(grad_norm),
                "train/tokens_per_s": batch * SEQ_LEN * config.logging.log_every / max(now - window, 1e-9),
            }
            window = now
            reporting += _report_step(recorder, metrics, step)
            last_metrics = metrics
    train_s = time.perf_counter() - started
    model.eval()
    eval_loss, accuracy = _evaluate(model, vocab)
    generations = _generate(model, vocab, workdir / "smoke.jsonl")
    adapter_dir = save_adapter(model, workdir / "adapter", adapter_config)
    metrics = {
        "eval/loss": eval_loss,
        "eval/smoke/accuracy": accuracy,
        "eval/average": accuracy,
        schema.METRIC_TRAIN_TIME: train_s,
        METRIC_COMPUTE_TIME: time.perf_counter() - body_started - reporting,
    }
    return TrialOutcome(metrics, adapter_dir, [generations], steps, last_metrics)
