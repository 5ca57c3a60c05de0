"""TEST-ONLY fault switch: make one rank die once, as a killed worker would, to exercise restarts.

The rank exits the process (no exception, no cleanup) at the start of the configured step. A marker
file in the run's storage folder remembers that it fired, so the restarted worker group goes on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from orchestration.training.config import FaultConfig


def marker_path(run_dir: Path, fault: FaultConfig) -> Path:
    return run_dir / f"fault_rank{fault.rank}_step{fault.at_step}.fired"


def maybe_fire(fault: FaultConfig | None, run_dir: Path | None, rank: int, step: int) -> None:
    """Exit this process if the fault is set for this rank and step and has not fired yet."""
    if fault is None or run_dir is None or fault.rank != rank or fault.at_step != step:
        return
    marker = marker_path(run_dir, fault)
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"rank {rank} exited at step {step}\n")
    print(f"[fault switch] rank {rank} exits at step {step} (test-only)", file=sys.stderr, flush=True)
    os._exit(1)
