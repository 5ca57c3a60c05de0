"""What a training run returns to its caller (CLI, Tune trial), and how it can fail."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class TrainingFailed(RuntimeError):
    """The workers failed more often than ``resources.max_failures`` allows (or left no final checkpoint)."""


class TrainingDivergedError(TrainingFailed):
    """The loss (or gradient norm) became NaN/inf; the run stopped instead of training on garbage."""


@dataclass
class TrainResult:
    """Where the trained adapter is and how training went: enough for a sweep trial to log to MLflow."""

    run_name: str
    run_path: str  # the Ray run folder in storage (checkpoints live here)
    checkpoint_path: str  # the final checkpoint folder
    adapter_path: str  # PEFT-format adapter (adapter_config.json + adapter_model.safetensors)
    metrics: dict[str, Any]  # final metrics (rank 0), incl. eval/* from the post-training hook
    history: list[dict[str, Any]] = field(default_factory=list)  # every report, in order, across restarts
    resumed_from_step: int = 0  # the step the last attempt resumed from (0: it started fresh)

    @property
    def steps(self) -> list[int]:
        """The step of every report, in order: a restart shows as a step that does not increase."""
        return [int(m["step"]) for m in self.history if "step" in m]
