"""Tune's search side: the grid as one axis of trial keys, or Optuna TPE whose study lives on disk.

The Optuna study is stored in ``<sweep dir>/optuna.db`` (an RDB storage), so a resumed sweep loads every
configuration already told to Optuna and continues the search from there. Configurations whose seeds
were interrupted (left RUNNING by a killed driver) are marked failed and re-enqueued with the same
parameters: the resumed sweep re-suggests them first, and the seeds that had finished come back from
MLflow without training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import Repeater
from ray.tune.search.optuna import OptunaSearch

from orchestration.sweep.space import suggest_point
from orchestration.sweep.spec import SweepSpec
from orchestration.tracking.schema import metric_key

STUDY_FILE = "optuna.db"


class DefineByRun:
    """Optuna's define-by-run space as a picklable object (Tune pickles its searcher when it checkpoints); it
    holds the validated spec, so a suggestion validates nothing."""

    def __init__(self, spec: SweepSpec):
        self.spec = spec

    def __call__(self, trial: Any) -> dict[str, Any]:
        return suggest_point(self.spec, trial)


@dataclass
class OptunaState:
    searcher: Any  # Repeater(OptunaSearch)
    remaining: int  # configurations still to run (each runs every seed)
    told: int  # configurations Optuna already learned from
    requeued: int  # interrupted configurations enqueued again


class SeedMeanRepeater(Repeater):
    """Repeater whose searcher reads the sweep metric from each trial's last report only.

    Tune holds every report to the metric its search algorithm declares (its strict metric check); a trial's
    per-step reports (for ASHA and the progress display) do not carry the sweep metric, only its final one
    does. So the Repeater declares none itself: its searcher still reads the metric, from the last result."""

    @property
    def metric(self) -> str | None:
        return None


class StepASHA(ASHAScheduler):
    """ASHA that decides on the reports carrying its metric and skips the others (as ASHA itself does), without
    Tune requiring the metric in every report (its strict metric check reads the scheduler's ``metric``)."""

    @property
    def metric(self) -> str | None:
        return None


class SeedMeanOptunaSearch(OptunaSearch):
    """A configuration whose every seed was stopped early has no seed mean (NaN): tell Optuna PRUNED."""

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        value = (result or {}).get(self.metric)
        if isinstance(value, float) and math.isnan(value):
            result = None
        super().on_trial_complete(trial_id, result=result, error=error)


def study_storage(sweep_dir: Path) -> Any:
    import optuna

    return optuna.storages.RDBStorage(f"sqlite:///{Path(sweep_dir).resolve() / STUDY_FILE}")


def open_study(spec: SweepSpec, sweep_dir: Path) -> Any:
    import optuna

    direction = "maximize" if spec.mode == "max" else "minimize"
    return optuna.create_study(
        storage=study_storage(sweep_dir), study_name=spec.name, direction=direction, load_if_exists=True
    )


def optuna_searcher(spec: SweepSpec, sweep_dir: Path) -> OptunaState:
    """Repeater(OptunaSearch) on the persisted study: each suggestion runs all seeds, TPE learns the mean."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(spec, sweep_dir)
    requeued = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
        study.enqueue_trial(trial.params)
        requeued += 1
    told = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    remaining = max(0, spec.search.optuna.num_samples - told)
    # A fresh seed per resume: re-seeding the same way would replay the first suggestions again.
    sampler = optuna.samplers.TPESampler(seed=spec.search.optuna.sampler_seed + len(study.trials))
    searcher = SeedMeanOptunaSearch(
        space=DefineByRun(spec),
        metric=metric_key(spec.metric),  # the name the trials report (MLflow's spelling)
        mode=spec.mode,
        sampler=sampler,
        study_name=spec.name,
        storage=study_storage(sweep_dir),
    )
    return OptunaState(SeedMeanRepeater(searcher, repeat=len(spec.seeds), set_index=True), remaining, told, requeued)


def asha_scheduler(spec: SweepSpec) -> Any | None:
    asha = spec.search.optuna.asha if spec.search.optuna else None
    if asha is None:
        return None
    return StepASHA(
        time_attr=asha.time_attr,
        metric=asha.metric,
        mode=asha.mode,
        # ASHA stops a trial when it reaches max_t; the spec's max_t is the last step, whose report comes
        # before the trial's evaluation: one more unit lets a surviving trial finish and be evaluated.
        max_t=asha.max_t + 1,
        grace_period=asha.grace_period,
        reduction_factor=asha.reduction_factor,
    )
