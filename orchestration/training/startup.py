"""Where a run's time before its first optimizer step goes, and how long its evaluation takes.

A worker cannot see when its trial began (the Tune driver started the Train controller, which started the
workers), so it reports wall-clock marks (``clock/*``, seconds since the epoch) next to its own phase
durations; the trial driver turns the marks into durations from its own start (:func:`startup_metrics`).
Wall clocks agree between processes of one node, and within NTP's milliseconds across nodes: far below the
seconds measured here.

Reported by the worker (rank 0, in its final report):
- ``clock/imports_began``: when the worker process began importing this project (``orchestration``'s first
  import); ``time/startup/imports_s``: how long importing the training loop took from there (torch,
  transformers, peft, datasets, comol: whatever Ray Train had not imported yet);
- ``clock/loop_entered``: when the worker's training function began;
- ``time/startup/<phase>_s``: tokenizer, data (records + tokenisation), model (load, adapter, sharding),
  optimizer (and resume);
- ``clock/first_step``: when the first optimizer step of this attempt began; ``clock/steps_done``: when its last
  step ended (``time/steps_s`` is the time in between: training proper);
- ``time/eval_s``: the post-training evaluation (model + adapter load on every rank, generation, scoring).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

CLOCK = "clock/"
PHASE = "time/startup/"
METRIC_STARTUP = "time/startup_s"
METRIC_EVAL = "time/eval_s"
IMPORTS_BEGAN = f"{CLOCK}imports_began"
LOOP_ENTERED = f"{CLOCK}loop_entered"
FIRST_STEP = f"{CLOCK}first_step"
STEPS_DONE = f"{CLOCK}steps_done"
METRIC_STEPS = "time/steps_s"


class StartupClock:
    """A worker's start-up: wall-clock marks and phase durations, as report keys."""

    def __init__(self, imports_began: float, imports_s: float):
        self.values: dict[str, float] = {
            IMPORTS_BEGAN: imports_began,
            f"{PHASE}imports_s": imports_s,
            LOOP_ENTERED: time.time(),
        }

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.values[f"{PHASE}{name}_s"] = time.perf_counter() - started

    def first_step(self) -> None:
        self.values.setdefault(FIRST_STEP, time.time())

    def steps_done(self) -> None:
        self.values[STEPS_DONE] = time.time()


def startup_metrics(report: Mapping[str, Any], trial_started_at: float) -> dict[str, float]:
    """A worker's start-up report → ``time/startup_s`` (trial start to first step) and its parts, and
    ``time/steps_s`` (first step to the end of the last), in seconds.

    ``time/startup/workers_s`` is trial start → the worker began importing this project: the Train controller and
    worker actors start, Ray Train's imports and its torch process group. ``time/startup/dispatch_s`` is the end of
    the imports → the training function's start. Marks missing from the report are skipped.
    """
    out = {k: float(v) for k, v in report.items() if k.startswith(PHASE)}
    began, entered, first = (report.get(k) for k in (IMPORTS_BEGAN, LOOP_ENTERED, FIRST_STEP))
    if began is not None:
        out[f"{PHASE}workers_s"] = float(began) - trial_started_at
        if entered is not None:
            imports = float(report.get(f"{PHASE}imports_s", 0.0))
            out[f"{PHASE}dispatch_s"] = max(0.0, float(entered) - float(began) - imports)
    if first is not None:
        out[METRIC_STARTUP] = float(first) - trial_started_at
        if report.get(STEPS_DONE) is not None:
            out[METRIC_STEPS] = float(report[STEPS_DONE]) - float(first)
    return out
