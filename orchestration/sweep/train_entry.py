"""The ``train`` trial entry: ``orchestration.training.launch.train()`` (a Ray Train V2 TorchTrainer) inside a Tune
trial.

The trial driver holds no CPU; the TorchTrainer's workers do. Their rank-0 reports reach this driver two
ways: Tune gets them (renamed to the schema's ``train/*`` names, so an ASHA ``metric: train/loss`` works)
through a ``TuneReportCallback`` in the Train controller, and MLflow gets them from ``train()``'s
``on_metrics`` relay, on this driver's thread — only the trial driver logs, never a worker. The final
adapter is gathered on rank 0 and saved in PEFT layout by the training entry; evaluation runs inside the
training job (its post-training hook) and comes back as ``eval/*`` metrics.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ray.tune.integration.ray_train import TuneReportCallback

from orchestration.sweep.space import TrialPlan
from orchestration.sweep.trainable import TrialOutcome
from orchestration.tracking import schema
from orchestration.tracking.writer import TrialRecorder

# The training loop's report keys → the MLflow/Tune names of the schema.
STEP_NAMES = {
    "loss": "train/loss",
    "lm_loss": "train/lm_loss",
    "aux_loss": "train/aux_loss",
    "grad_norm": "train/grad_norm",
    "lr": "train/lr",
    "tokens_per_s": "train/tokens_per_s",
    "mfu": "train/mfu",
    "epoch": "train/epoch",
    "val_loss": "eval/val_loss",
}


def schema_metrics(report: dict[str, Any]) -> dict[str, Any]:
    """One training report in the schema's names (``step`` kept; eval/* from the hook, and the start-up and
    evaluation timings (time/*, clock/*: orchestration/training/startup.py) passed through)."""
    out: dict[str, Any] = {}
    for key, value in report.items():
        if key in STEP_NAMES:
            out[STEP_NAMES[key]] = value
        elif key == "peak_mem_gb":
            out["train/peak_mem_mb"] = float(value) * 1024
        elif key == "step" or key.startswith(("eval/", "time/", "clock/")):
            out[key] = value
    return out


class SchemaTuneReport(TuneReportCallback):
    """Tune's Train→Tune bridge, with the reports renamed to the schema's names."""

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        renamed = [schema_metrics(m) for m in metrics]
        super().after_report(run_context, renamed, checkpoint)


def split_generations(plan: TrialPlan, folder: Path) -> list[Path]:
    """The hook's one JSONL (every benchmark's records) → one ``<benchmark>.jsonl`` per dataset, as the schema lays
    out artifacts; records are grouped by their ``dataset`` (math) or ``task`` (humaneval)."""
    options = getattr(plan.train.evaluation, "options", None)
    return split_generations_file(getattr(options, "generations_path", None), folder)


def split_generations_file(path: str | None, folder: Path) -> list[Path]:
    """``split_generations`` of the hook's file at ``path`` (nothing when there is none)."""
    if path is None or not Path(path).is_file():
        return []
    source = Path(path)
    groups: dict[str, list[str]] = {}
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = json.loads(line)
            groups.setdefault(str(record.get("dataset") or record.get("task") or "generations"), []).append(line)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, lines in sorted(groups.items()):
        path = folder / f"{name}.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def local_adapter(adapter_path: str, storage: str, target: Path) -> Path:
    """The final adapter as a local folder: as is on local storage, copied down from remote storage (s3://…),
    for which Ray gives checkpoint paths without their scheme."""
    if Path(adapter_path).is_dir():
        return Path(adapter_path)
    import pyarrow.fs

    scheme = storage.split("://", 1)[0] if "://" in storage else None
    source = adapter_path if scheme is None or "://" in adapter_path else f"{scheme}://{adapter_path}"
    target.mkdir(parents=True, exist_ok=True)
    pyarrow.fs.copy_files(source, str(target))
    return target


def run_train_trial(plan: TrialPlan, recorder: TrialRecorder, workdir: Path) -> TrialOutcome:
    from orchestration.training.launch import train

    last_step = 0

    def on_metrics(report: dict[str, Any]) -> None:
        nonlocal last_step
        metrics = schema_metrics(report)
        step = int(metrics.get("step", 0))
        last_step = max(last_step, step)
        per_step = {k: v for k, v in metrics.items() if k.startswith("train/") or k == "eval/val_loss"}
        recorder.log_step(per_step, step)

    started = time.perf_counter()
    # The run name is the trial's identity, so a retried or resumed trial resumes its own checkpoints.
    result = train(plan.train, run_name=plan.run_name, on_metrics=on_metrics, callbacks=[SchemaTuneReport()])
    train_s = time.perf_counter() - started
    # train/* of the last step are already in the step history; the final record adds eval/* and costs.
    reported = {k: v for k, v in schema_metrics(result.metrics).items() if k != "step"}
    final = {k: v for k, v in reported.items() if not k.startswith("train/")}
    last_step_metrics = {k: v for k, v in reported.items() if k.startswith("train/")}
    final.update({schema.METRIC_TRAIN_TIME: train_s, "train/resumed_from_step": result.resumed_from_step})
    generations = split_generations(plan, workdir / schema.GENERATIONS_DIR)
    step = last_step or int(result.metrics.get("step", 0))
    adapter = local_adapter(result.adapter_path, plan.train.output_dir, workdir / "adapter")
    return TrialOutcome(final, adapter, generations, step, last_step_metrics)
