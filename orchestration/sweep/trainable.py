"""The Tune function trainable: one (configuration, seed) → at most one finished MLflow child run.

The trial driver (this function, in a Tune actor that holds no CPU) looks its run up by identity, reports
the recorded result without training when the run already FINISHED (a resumed or retried sweep), and
otherwise runs the trial body — the training entry's TorchTrainer, whose workers hold the CPUs/GPUs — and
records params, per-step and final metrics, cost, the adapter, the resolved config and the generations.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestration.sweep.cost import trial_cost
from orchestration.sweep.space import TrialPlan, optuna_point, resolve_trial
from orchestration.sweep.spec import SweepSpec
from orchestration.tracking import schema
from orchestration.tracking.schema import metric_key
from orchestration.tracking.writer import TrialIdentity, TrialRecorder
from orchestration.training.startup import CLOCK, startup_metrics

# The trial bodies by spec ``entry`` (the spec allows these keys only): "module:function", imported in the trial's
# process.
ENTRIES = {
    "train": "orchestration.sweep.train_entry:run_train_trial",
    "smoke": "orchestration.sweep.smoke:run_smoke_trial",
}
TRIAL_INDEX = "__trial_index__"  # set by Repeater: which of the spec's seeds this repeat is
METRIC_TRIAL_TIME = "time/trial_s"
METRIC_CACHED = "trial/cached"


@dataclass
class TrialOutcome:
    """What a trial body hands back; the trainable records it (the body logs only per-step metrics)."""

    metrics: dict[str, float]
    adapter_dir: Path | None = None
    generations: list[Path] = field(default_factory=list)
    last_step: int = 0
    last_step_metrics: dict[str, float] = field(default_factory=dict)  # already in the step history


Body = Callable[[TrialPlan, TrialRecorder, Path], TrialOutcome]


@dataclass
class SweepContext:
    """Everything a trial needs, shipped once to every trial through the object store (the validated spec and
    trial plans, pickled: a trial validates nothing again)."""

    spec: SweepSpec
    uri: str
    experiment_id: str
    parent_run_id: str
    sweep_dir: str
    train_dir: str
    trials: dict[str, TrialPlan]  # grid: by TrialPlan.key; Optuna trials are resolved from their suggestion

    def plan_for(self, config: dict[str, Any]) -> TrialPlan:
        """The trial's plan: a grid trial's from the plan; an Optuna suggestion's resolved (and validated) here,
        once, as planning checked its space's corners only."""
        if "trial" in config:
            return self.trials[config["trial"]]
        point, where = optuna_point(self.spec, {k: v for k, v in config.items() if k != TRIAL_INDEX})
        seed = self.spec.seeds[int(config.get(TRIAL_INDEX, 0))]
        return resolve_trial(self.spec, point, seed, where, self.train_dir)

    def identity_for(self, plan: TrialPlan) -> TrialIdentity:
        """The MLflow identity of a trial's run: the same (config_id, seed) always reopens the same run."""
        return TrialIdentity(
            uri=self.uri,
            experiment_id=self.experiment_id,
            parent_run_id=self.parent_run_id,
            sweep=self.spec.name,
            config_id=plan.config_id,
            seed=plan.seed,
            method=plan.method,
            base_model=plan.train.model,
            run_name=plan.run_name,
        )


def load_body(entry: str) -> Body:
    module_name, _, name = ENTRIES[entry].partition(":")
    return getattr(importlib.import_module(module_name), name)


def cost_metrics(plan: TrialPlan) -> dict[str, float]:
    """Trainable parameters and adapter FLOPs/token from comol's accounting (meta device, no weights)."""
    cost = trial_cost(plan)
    return {schema.METRIC_TRAINABLE: float(cost.trainable), schema.METRIC_FLOPS: float(cost.adapter_flops_per_token)}


def _audit(sweep_dir: str, event: str, plan: TrialPlan, attempt: int) -> None:
    """One line per training start/finish: the resume tests count trainings with it (cheap, append-only)."""
    line = json.dumps({"event": event, "trial": plan.key, "attempt": attempt, "time": time.time(), "pid": os.getpid()})
    with open(Path(sweep_dir) / "attempts.jsonl", "a") as handle:
        handle.write(line + "\n")


def _report(metrics: dict[str, Any]) -> None:
    from ray import tune

    tune.report({k: v for k, v in metrics.items() if isinstance(v, (int, float, str))})


def run_trial(config: dict[str, Any], context: SweepContext) -> None:
    """Tune's function trainable (see module docstring)."""
    started_at = time.time()  # the trial's start, from which its start-up (time/startup_s) is counted
    plan = context.plan_for(config)
    recorder = TrialRecorder(context.identity_for(plan)).open()
    tags = {"config_id": plan.config_id, "seed": plan.seed, "method": plan.method}
    if recorder.finished:  # done by an earlier attempt or driver: report it, do not train again
        _report({**recorder.existing_metrics, **tags, METRIC_CACHED: 1})
        return
    recorded = record_trial(context, plan, recorder, load_body(context.spec.entry), started_at=started_at)
    _report({**recorded, **tags, METRIC_CACHED: 0})


def record_trial(
    context: SweepContext, plan: TrialPlan, recorder: TrialRecorder, body: Body, started_at: float | None = None
) -> dict[str, float]:
    """One training attempt of a trial, recorded in its (opened) run: params, cost, config, the body's metrics,
    adapter and generations; the run ends FINISHED, FAILED, or KILLED (pruned). Returns the final metrics.

    The body's wall-clock marks (``clock/*``, from the training workers) become start-up durations counted from
    ``started_at`` (the trial's start; default: now) — see orchestration/training/startup.py."""
    spec = context.spec
    started_at = time.time() if started_at is None else started_at
    recorded_config = plan.train.model_dump(mode="json")  # MLflow params and the config artifact
    attempt = recorder.start_attempt(recorded_config)
    _audit(context.sweep_dir, "start", plan, attempt)
    workdir = Path(context.sweep_dir) / "trials" / plan.key / f"attempt-{attempt}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        cost = recorder.log_final(cost_metrics(plan))  # before training: an unreadable model fails in seconds
        recorder.log_config(recorded_config)
        outcome = body(plan, recorder, workdir)
        final = {k: v for k, v in outcome.metrics.items() if not k.startswith(CLOCK)}
        # Counted from the trial's start, as its start-up is: the parts add up to the whole
        final.update({**startup_metrics(outcome.metrics, started_at), METRIC_TRIAL_TIME: time.time() - started_at})
        produced = {metric_key(k) for k in [*final, *outcome.last_step_metrics]}
        if metric_key(spec.metric) not in produced:
            raise KeyError(f"the trial produced no {spec.metric!r} (spec.metric); it produced: {sorted(produced)}")
        if outcome.adapter_dir is not None:
            recorder.log_adapter(outcome.adapter_dir)
        recorder.log_generations(outcome.generations)
        last = {metric_key(k): v for k, v in outcome.last_step_metrics.items()}
        recorded = {**last, **cost, **recorder.log_final(final, step=outcome.last_step)}
    except SystemExit:  # Tune's way of stopping a trial the scheduler (ASHA) cut short, at a report
        recorder.end("KILLED", pruned=True)
        raise
    except BaseException:
        recorder.end("FAILED")
        raise
    recorder.end("FINISHED")
    _audit(context.sweep_dir, "finish", plan, attempt)
    return recorded
