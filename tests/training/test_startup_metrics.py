"""A worker's start-up marks → the trial's time/* durations, counted from the trial driver's start."""

from __future__ import annotations

import pytest

from orchestration.training.startup import (
    FIRST_STEP,
    IMPORTS_BEGAN,
    LOOP_ENTERED,
    METRIC_STARTUP,
    METRIC_STEPS,
    STEPS_DONE,
    StartupClock,
    startup_metrics,
)

T0 = 1_000_000.0  # the trial's start (wall clock)
FULL = {
    IMPORTS_BEGAN: T0 + 10.0,
    "time/startup/imports_s": 6.0,
    LOOP_ENTERED: T0 + 17.5,
    "time/startup/model_s": 3.0,
    FIRST_STEP: T0 + 22.0,
    STEPS_DONE: T0 + 52.0,
    "time/eval_s": 9.0,  # not start-up: the trial driver keeps it as it is
}


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (
            FULL,
            {
                METRIC_STARTUP: 22.0,
                "time/startup/workers_s": 10.0,
                "time/startup/imports_s": 6.0,
                "time/startup/dispatch_s": 1.5,
                "time/startup/model_s": 3.0,
                METRIC_STEPS: 30.0,
            },
        ),
        # a resumed attempt with no step left to run: no first step, so no start-up and no steps
        (
            {k: v for k, v in FULL.items() if k not in (FIRST_STEP, STEPS_DONE)},
            {
                "time/startup/workers_s": 10.0,
                "time/startup/imports_s": 6.0,
                "time/startup/dispatch_s": 1.5,
                "time/startup/model_s": 3.0,
            },
        ),
        ({"time/eval_s": 2.0}, {}),  # a body without marks (the smoke entry)
    ],
    ids=["full", "no-step", "no-marks"],
)
def test_startup_metrics(report, expected):
    assert startup_metrics(report, T0) == pytest.approx(expected)


def test_clock_keeps_the_first_step_and_times_phases():
    clock = StartupClock(T0, 2.0)
    with clock.phase("data"):
        pass
    clock.first_step()
    first = clock.values[FIRST_STEP]
    clock.first_step()  # a later step does not move the mark
    assert clock.values[FIRST_STEP] == first and clock.values["time/startup/data_s"] >= 0
    assert clock.values[IMPORTS_BEGAN] == T0 and clock.values["time/startup/imports_s"] == 2.0
