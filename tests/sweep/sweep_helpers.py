"""Sweep test helpers: spec builders, and the environment and clean-up of Ray subprocesses."""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from pathlib import Path
from typing import Any

import yaml
from servers import processes_using

# Subprocess clusters, jobs and drivers get RAY_AUTH_MODE pinned in their environment (see ``ray_env``);
# the in-process Ray follows Ray's own default, which must not be changed after ray is imported.
RAY_AUTH_MODE = "token"


def ray_env(**extra: str) -> dict[str, str]:
    """The environment for a Ray subprocess: this venv first on PATH, auth mode pinned, no stray address."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_AUTH_MODE"] = RAY_AUTH_MODE
    env.update(extra)
    return env


def grid_spec(name: str, model: Path, **overrides: Any) -> dict[str, Any]:
    """A 2 × 2 grid (LoRA/CoMoL × rank 2/4) × 2 seeds of seconds-long smoke trials on the tiny model."""
    spec: dict[str, Any] = {
        "name": name,
        "entry": "smoke",
        "seeds": [0, 1],
        "metric": "eval/average",
        "mode": "max",
        "train": {
            "model": str(model),
            "adapter": {"target_modules": ["q_proj", "v_proj"]},
            "data": {"size": 16},
            "training": {"max_steps": 4, "batch_size": 4, "lr": 1e-3},
        },
        "search": {"grid": {"variants": [{"method": "lora"}, {"method": "comol", "experts": 2}], "rank": [2, 4]}},
    }
    spec.update(copy.deepcopy(overrides))
    return spec


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def kill_tree(pgid: int | None, marker: str) -> None:
    """Stop what a test started: its process group, then any process still naming its own temp dir (removed last)."""
    import shutil
    import signal
    import time

    if pgid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = processes_using(marker)
        if not left:
            shutil.rmtree(marker, ignore_errors=True)
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
