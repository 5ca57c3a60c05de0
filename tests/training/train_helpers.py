"""Helpers the training tests hand to Ray workers by import path (workers do not have tests/ on their path,
so this module imports nothing from it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ray.train import UserCallback

CONTROLLER_SETTINGS = ("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")


def probe_hook(model, tokenizer, options, *, rank: int, world_size: int, device) -> dict[str, float]:
    """A post-training hook (orchestration/training/hooks.py contract) that reports what it was given."""
    from comol import adapter_layers

    b_weights = [p for name, p in model.named_parameters() if "comol_B" in name]
    return {
        "max_abs_B": max(float(p.abs().max()) for p in b_weights),
        "adapter_layers": float(len(adapter_layers(model))),
        "world_size": float(world_size),
        "in_eval_mode": float(not model.training),
        "option": float(options["option"]),
        "short_prompt": float(options["prompt_template"] == "short"),  # the template the adapter records
    }


def kill_rank_after_step(loop_config: dict[str, Any], *, rank: int, step: int, marker: str) -> Any:
    """The product's worker loop, except that rank ``rank`` dies right after it reported step ``step`` (exits
    without cleanup, as a killed process would), once: the marker file remembers that it fired, so the restarted
    worker group trains on untouched. Used as ``train(..., worker_loop=partial(kill_rank_after_step, ...))``."""
    import ray.train

    from orchestration.training.loop import train_loop_per_worker

    fired = Path(marker)
    if ray.train.get_context().get_world_rank() == rank and not fired.exists():
        report = ray.train.report

        def report_then_die(metrics: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            result = report(metrics, *args, **kwargs)
            if metrics.get("step") == step:
                fired.write_text(f"rank {rank} exited after reporting step {step}\n")
                os._exit(1)
            return result

        ray.train.report = report_then_die  # this worker process only; the loop looks it up on every report
    return train_loop_per_worker(loop_config)


class ControllerEnvironment(UserCallback):
    """Runs inside Ray Train's controller: writes the run settings the controller reads from its environment to
    ``path`` (once, at the first report)."""

    def __init__(self, path: str | Path):
        self.path = str(path)

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if not os.path.exists(self.path):
            Path(self.path).write_text(json.dumps({name: os.environ.get(name) for name in CONTROLLER_SETTINGS}))
