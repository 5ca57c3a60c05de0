"""The base row: the untrained base model, evaluated once per sweep as the reference every trained row is read
against ("did fine-tuning teach anything?" needs the number it started from).

Its score depends on the model, the evaluation hook and options, the prompt template the trials train with, the
precision, the device and the number of workers (the hook's sharding and batches) — never on the adapter, the
seed or the training settings. Those settings, hashed (``schema.base_key``), identify it: a sweep evaluates each
distinct one once and records it as a base run in its MLflow experiment; a resumed sweep finds it there, and a
sweep whose store already holds a FINISHED base run of the same key (another sweep's) copies its metrics instead
of evaluating again.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from orchestration.sweep.space import SweepPlan
from orchestration.tracking import schema
from orchestration.tracking.writer import SweepTracker
from orchestration.training.config import BenchmarkEvaluation, TrainConfig

BASE_ENTRY = "train"  # smoke trials run no evaluation hook: nothing to compare with


@dataclass(frozen=True)
class BasePlan:
    key: str
    settings: dict[str, Any]  # what the score depends on (recorded as the base run's params)
    config: TrainConfig  # a trial's config, renamed: the evaluation runs on its workers, with its hook


def base_settings(config: TrainConfig) -> dict[str, Any]:
    """What the untrained model's score depends on (the generations file is where, not what)."""
    evaluation = config.evaluation.model_dump(mode="json") if config.evaluation is not None else None
    if evaluation is not None and isinstance(evaluation.get("options"), dict):
        evaluation["options"].pop("generations_path", None)
    return {
        "model": config.model,
        "evaluation": evaluation,
        "prompt_template": config.data.prompt_template,
        "bf16": config.bf16,
        "device": "cuda" if config.use_gpu else "cpu",
        "num_workers": config.resources.num_workers,
    }


def base_plans(sweep_plan: SweepPlan, train_dir: str) -> list[BasePlan]:
    """One plan per distinct base setting among the sweep's trials; none for a sweep without evaluation."""
    spec = sweep_plan.spec
    if not spec.base_row or spec.entry != BASE_ENTRY:
        return []
    plans: dict[str, BasePlan] = {}
    for trial in sweep_plan.trials or sweep_plan.corners or [sweep_plan.example]:
        if trial.train.evaluation is None:
            continue
        settings = base_settings(trial.train)
        key = schema.base_key(settings)
        if key not in plans:
            run_name = f"{spec.name}-base-{key}"
            generations = f"{train_dir}/{run_name}/generations.jsonl" if "://" not in train_dir else None
            config = trial.train.for_run(
                name=spec.name, run_name=run_name, output_dir=train_dir, generations_path=generations
            )
            plans[key] = BasePlan(key, settings, config)
    return list(plans.values())


def missing(plans: list[BasePlan], tracker: SweepTracker) -> list[BasePlan]:
    """The plans this sweep has no FINISHED base run of yet."""
    return [p for p in plans if tracker.base_run(p.key) is None]


def record_base_rows(plans: list[BasePlan], tracker: SweepTracker, console: Console, sweep_dir: Path) -> None:
    """Evaluate (or copy from another sweep of this store) every base setting the sweep has no run of; needs Ray."""
    from orchestration.sweep.train_entry import split_generations_file
    from orchestration.training.base_eval import evaluate_base

    for plan in plans:
        model = plan.config.model
        earlier = tracker.base_run_elsewhere(plan.key)
        if earlier is not None:
            source = earlier.info.run_id
            tracker.record_base(plan.key, model, plan.settings, earlier.data.metrics, source_run=source)
            console.print(f"base model {model}: untrained scores copied from base run {source} (same settings)")
            continue
        console.print(f"base model {model}: evaluating it untrained once, as the reference row")
        metrics = evaluate_base(plan.config, plan.config.run_name or f"base-{plan.key}")
        options = plan.config.evaluation.options if isinstance(plan.config.evaluation, BenchmarkEvaluation) else None
        folder = sweep_dir / "base" / plan.key / schema.GENERATIONS_DIR
        generations = split_generations_file(getattr(options, "generations_path", None), folder)
        tracker.record_base(plan.key, model, plan.settings, metrics, generations)
