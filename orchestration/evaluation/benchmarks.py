"""Benchmark entry points for a trained model: math accuracy and HumanEval pass@k, shardable by rank.

``evaluate_math`` / ``evaluate_humaneval`` generate for the shard ``rank::world_size`` of the examples and
return an ``EvalResult``: scored records (one per generation, JSONL-ready) and metrics computed over those
records. With one process the metrics are final; with several, gather every rank's ``records`` and call
``math_metrics`` / ``humaneval_metrics`` once on the union (``training_hook`` does exactly that).
Metric names: ``eval/<dataset>/accuracy``, ``eval/average`` (unweighted over the datasets evaluated),
``eval/humaneval/pass@k``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from comol.errors import ConfigError
from orchestration.data.arithmetic import ARITHMETIC, arithmetic_test_records
from orchestration.data.prompts import DEFAULT_TEMPLATE, build_prompt
from orchestration.evaluation.generation import GenerationConfig, generate, record_prompts
from orchestration.evaluation.humaneval import Postprocess, execute_samples, humaneval_metrics, load_problems
from orchestration.evaluation.math_scoring import (
    MATH_DATASETS,
    check_dataset,
    extract_answer,
    is_correct,
    load_math_dataset,
    math_metrics,
)
from orchestration.evaluation.options import BenchmarkOptions
from orchestration.evaluation.sandbox import SandboxLimits

DATA_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data"  # ../shared/data next to the repo
PROMPT_STYLES = ("template", "raw")
ARITHMETIC_RULES = "gsm8k"  # their answers are numbers: the reference numeric rule (last number, within 0.001)


# ``evaluation.options.postprocess`` of the training hook: HumanEval completions are scored as generated
# (the authors' protocol) unless a spec names a clean-up.


def postprocess_option(options: BenchmarkOptions) -> Postprocess | None:
    """The clean-up the (validated) options name: raw completions unless 'standard' is asked for."""
    return Postprocess.standard() if options.postprocess == "standard" else None


@dataclass
class EvalResult:
    metrics: dict[str, float]
    records: list[dict] = field(default_factory=list)


def shard(n: int, rank: int = 0, world_size: int = 1) -> range:
    """The example indices of one rank: ``rank, rank + world_size, ...`` (every index in exactly one shard)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError("rank", f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return range(rank, n, world_size)


def _score_math(
    model: torch.nn.Module,
    tokenizer,
    name: str,
    rules: str,
    examples: Sequence[Mapping],
    rank: int,
    world_size: int,
    generation: GenerationConfig,
    progress: bool,
    template: str,
) -> list[dict]:
    """Greedy completions of this rank's shard of ``examples`` (prompts in ``template``), scored by the ``rules``
    dataset's answer rule."""
    indices = shard(len(examples), rank, world_size)
    items = [examples[i] for i in indices]
    prompts = record_prompts(items, template)
    outputs = generate(model, tokenizer, prompts, generation, progress=progress, desc=f"math/{name}")
    return [
        {
            "task": "math",
            "dataset": name,
            "index": index,
            "instruction": item["instruction"],
            "prompt": prompt,
            "answer": item["answer"],
            "output": completion,
            "prediction": extract_answer(rules, completion),
            "correct": is_correct(rules, completion, item["answer"]),
        }
        for index, item, prompt, (completion,) in zip(indices, items, prompts, outputs, strict=True)
    ]


def _greedy(generation: GenerationConfig | None) -> GenerationConfig:
    generation = generation or GenerationConfig.math()
    if generation.num_samples != 1:
        raise ConfigError("num_samples", "math is scored on one completion per problem (greedy)")
    return generation


def evaluate_math(
    model: torch.nn.Module,
    tokenizer,
    datasets: Sequence[str] = MATH_DATASETS,
    *,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    generation: GenerationConfig | None = None,
    progress: bool = True,
    prompt_template: str = DEFAULT_TEMPLATE,
) -> EvalResult:
    """Greedy completions of the first ``limit`` examples of each test set (this rank's shard), scored.
    ``prompt_template`` must be the one the model was trained with (see orchestration/data/prompts.py)."""
    generation = _greedy(generation)
    root = Path(data_dir) if data_dir is not None else DATA_DIR / "math"
    records = []
    for name in [check_dataset(d) for d in datasets]:
        examples = load_math_dataset(name, root)[:limit]
        records += _score_math(
            model, tokenizer, name, name, examples, rank, world_size, generation, progress, prompt_template
        )
    return EvalResult(math_metrics(records) if records else {}, records)


def evaluate_arithmetic(
    model: torch.nn.Module,
    tokenizer,
    *,
    size: int,
    train_size: int,
    data_seed: int,
    rank: int = 0,
    world_size: int = 1,
    generation: GenerationConfig | None = None,
    progress: bool = True,
    prompt_template: str = DEFAULT_TEMPLATE,
) -> EvalResult:
    """Held-out synthetic arithmetic (the quickstart's metric): ``size`` problems that the training set of
    ``data.size=train_size, data.seed=data_seed`` does not contain, scored by the numeric rule of GSM8K."""
    problems = arithmetic_test_records(size, data_seed, train_size)
    generation = _greedy(generation)
    records = _score_math(
        model,
        tokenizer,
        ARITHMETIC,
        ARITHMETIC_RULES,
        problems,
        rank,
        world_size,
        generation,
        progress,
        prompt_template,
    )
    return EvalResult(math_metrics(records) if records else {}, records)


def humaneval_prompt(problem: Mapping, style: str = "template", template: str = DEFAULT_TEMPLATE) -> str:
    """``template``: the problem's prompt as the instruction of the training ``template``; ``raw``: the prompt
    alone."""
    if style == "template":
        return build_prompt(problem["prompt"], template=template)
    if style == "raw":
        return problem["prompt"]
    raise ConfigError("prompt_style", f"unknown prompt style {style!r}", allowed=PROMPT_STYLES)


def evaluate_humaneval(
    model: torch.nn.Module,
    tokenizer,
    *,
    limit: int | None = None,
    rank: int = 0,
    world_size: int = 1,
    generation: GenerationConfig | None = None,
    ks: Iterable[int] = (1, 5, 10),
    prompt_style: str = "template",
    prompt_template: str = DEFAULT_TEMPLATE,
    postprocess: Postprocess | None = None,
    sandbox_limits: SandboxLimits | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> EvalResult:
    """``num_samples`` completions per problem of this rank's shard, each executed in the sandbox.

    Completions run as ``prompt + completion`` unchanged unless ``postprocess`` is given (see humaneval.py).
    """
    generation = generation or GenerationConfig.humaneval()
    problems = load_problems(limit)
    mine = [problems[i] for i in shard(len(problems), rank, world_size)]
    prompts = [humaneval_prompt(p, prompt_style, prompt_template) for p in mine]
    outputs = generate(model, tokenizer, prompts, generation, progress=progress, desc="humaneval")
    samples = [
        {"task_id": problem["task_id"], "sample": j, "completion": completion}
        for problem, completions in zip(mine, outputs, strict=True)
        for j, completion in enumerate(completions)
    ]
    records = execute_samples(
        samples, mine, postprocess=postprocess, limits=sandbox_limits, workers=workers, progress=progress
    )
    return EvalResult(humaneval_metrics(records, ks) if records else {}, records)


def write_jsonl(path: str | Path, records: Iterable[Mapping]) -> Path:
    """One JSON object per line; parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def _gather(records: list[dict], world_size: int) -> list[dict]:
    if world_size == 1:
        return records
    import torch.distributed as dist

    parts: list[list[dict] | None] = [None] * world_size
    dist.all_gather_object(parts, records)
    return [record for part in parts for record in part or []]


def benchmark_options(options: BenchmarkOptions | Mapping) -> BenchmarkOptions:
    """The hook's options, typed: a training config hands them over validated; a plain mapping (a direct call)
    is validated here, its errors named as in a training config."""
    if isinstance(options, BenchmarkOptions):
        return options
    from pydantic import ValidationError

    from orchestration.config_errors import config_error

    try:
        return BenchmarkOptions.model_validate(dict(options))
    except ValidationError as err:
        error = config_error(err, BenchmarkOptions, "options")
        raise error.renamed(f"evaluation.options.{error.field}") from None


def training_hook(
    model: torch.nn.Module,
    tokenizer,
    options: BenchmarkOptions | Mapping,
    *,
    rank: int,
    world_size: int,
    device: torch.device,
) -> dict[str, float]:
    """The post-training hook (``orchestration/training/hooks.py`` contract), identical on every rank.

    Options: see :mod:`orchestration.evaluation.options` (``prompt_template``, set by the hook runner, is the
    template the adapter was trained with). Keys are returned without the ``eval/`` prefix, which the hook runner
    adds.
    """
    options = benchmark_options(options)
    overrides = options.generation_overrides()
    template = options.prompt_template or DEFAULT_TEMPLATE
    metrics: dict[str, float] = {}
    records: list[dict] = []
    if options.math:
        result = evaluate_math(
            model,
            tokenizer,
            options.math,
            data_dir=options.data_dir,
            limit=options.limit,
            rank=rank,
            world_size=world_size,
            generation=GenerationConfig.math(**overrides),
            progress=rank == 0,
            prompt_template=template,
        )
        records += _gather(result.records, world_size)
    if options.arithmetic is not None:
        held_out = options.arithmetic
        if held_out.train_size is None:
            raise ConfigError(
                "evaluation.options.arithmetic",
                f"needs train_size (the training set to hold out: its data.size) and data_seed; got {held_out!r}",
            )
        result = evaluate_arithmetic(
            model,
            tokenizer,
            size=held_out.size,
            train_size=held_out.train_size,
            data_seed=held_out.data_seed or 0,
            rank=rank,
            world_size=world_size,
            generation=GenerationConfig.math(**overrides),
            progress=rank == 0,
            prompt_template=template,
        )
        records += _gather(result.records, world_size)
    if records:  # the average is over every math dataset evaluated, arithmetic included
        metrics.update(math_metrics(records))
    if options.humaneval:
        if options.num_samples is not None:
            overrides["num_samples"] = options.num_samples
        ks = [k for k in (1, 5, 10) if k <= overrides.get("num_samples", 10)]
        result = evaluate_humaneval(
            model,
            tokenizer,
            limit=options.humaneval_limit,
            rank=rank,
            world_size=world_size,
            generation=GenerationConfig.humaneval(**overrides),
            ks=ks,
            postprocess=postprocess_option(options),
            progress=rank == 0,
            prompt_template=template,
        )
        merged = _gather(result.records, world_size)
        metrics.update(humaneval_metrics(merged, ks))
        records += merged
    if rank == 0 and options.generations_path:
        write_jsonl(options.generations_path, records)
    return {key.removeprefix("eval/"): value for key, value in metrics.items()}
