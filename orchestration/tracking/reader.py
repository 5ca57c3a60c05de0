"""Read one sweep's record from MLflow (never from local files), exactly as ``schema`` lays it out and
:mod:`orchestration.tracking.writer` writes it. The report and the registry both read through here.

Reading only: nothing here writes to the tracking store, so a bad sweep name changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from comol.errors import ConfigError
from orchestration.tracking import schema
from orchestration.tracking.queries import runs_filter, search_all

if TYPE_CHECKING:
    from mlflow import MlflowClient

EXPERIMENT_PREFIX = schema.experiment_name("")


@dataclass
class TrialRun:
    """One finished child run: one (configuration, seed)."""

    run_id: str
    config_id: str
    seed: int
    method: str
    base_model: str | None
    params: dict[str, str]
    metrics: dict[str, float]
    artifact_uri: str
    start_time: int = 0


@dataclass
class BaseRun:
    """The untrained base model's evaluation (one per distinct evaluation setting): the reference row."""

    run_id: str
    key: str
    model: str
    params: dict[str, str]
    metrics: dict[str, float]


@dataclass
class SweepRecord:
    sweep: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    trials: list[TrialRun]
    notes: list[str] = field(default_factory=list)  # runs left out, and why
    base: list[BaseRun] = field(default_factory=list)  # the untrained model's rows (none in older sweeps)


def logged_metric_name(name: str, logged: set[str]) -> str:
    """``eval/humaneval/pass@1`` as the runs logged it (the writer's :func:`schema.metric_key` spelling)."""
    if name in logged:
        return name
    spelled = schema.metric_key(name)
    return spelled if spelled in logged else name


def known_sweeps(client: MlflowClient) -> list[str]:
    """Sweep names that have an experiment in this store (to name them in an error)."""
    names = [e.name for e in client.search_experiments(max_results=1000)]
    return sorted(n.removeprefix(EXPERIMENT_PREFIX) for n in names if n.startswith(EXPERIMENT_PREFIX))


def load_sweep(client: MlflowClient, sweep: str) -> SweepRecord:
    """The sweep's parent run and its finished trial runs; a missing sweep or no finished run is an error."""
    if not sweep:
        raise ConfigError("sweep", "must be a non-empty sweep name")
    uri = client.tracking_uri
    experiment = client.get_experiment_by_name(schema.experiment_name(sweep))
    if experiment is None:
        known = known_sweeps(client)
        raise ConfigError(
            "sweep",
            f"no sweep {sweep!r} in MLflow at {uri} (no experiment {schema.experiment_name(sweep)!r}); "
            f"sweeps there: {', '.join(known) if known else 'none'}",
        )
    eid = experiment.experiment_id
    parents = search_all(client, eid, runs_filter(schema.ROLE_SWEEP, sweep))
    if not parents:
        raise ConfigError("sweep", f"sweep {sweep!r} has no parent run (tag {schema.ROLE}={schema.ROLE_SWEEP})")
    notes: list[str] = []
    parent = min(parents, key=lambda r: r.info.start_time or 0)
    if len(parents) > 1:
        notes.append(f"{len(parents)} parent runs for sweep {sweep!r}; using the first, {parent.info.run_id}")

    children = search_all(client, eid, runs_filter(schema.ROLE_TRIAL, sweep))
    by_identity: dict[tuple[str, int], TrialRun] = {}
    unfinished = 0
    for run in children:
        tags = run.data.tags
        if run.info.status != "FINISHED":
            unfinished += 1
            continue
        if schema.CONFIG_ID not in tags or schema.SEED not in tags:
            notes.append(f"run {run.info.run_id} lacks the {schema.CONFIG_ID}/{schema.SEED} tags; left out")
            continue
        trial = TrialRun(
            run_id=run.info.run_id,
            config_id=tags[schema.CONFIG_ID],
            seed=int(tags[schema.SEED]),
            method=tags.get(schema.METHOD) or run.data.params.get(schema.param("method"), "?"),
            base_model=tags.get(schema.BASE_MODEL),
            params=dict(run.data.params),
            metrics=dict(run.data.metrics),
            artifact_uri=run.info.artifact_uri,
            start_time=run.info.start_time or 0,
        )
        key = (trial.config_id, trial.seed)
        if key in by_identity:  # the sweep promises one run per identity; keep the latest if not
            notes.append(f"two finished runs for config {key[0]} seed {key[1]}; using the later one")
            if trial.start_time < by_identity[key].start_time:
                continue
        by_identity[key] = trial
    if unfinished:
        notes.append(f"{unfinished} trial run(s) not FINISHED (running, failed, killed or pruned) are left out")
    if not by_identity:
        raise ConfigError("sweep", f"sweep {sweep!r} has no finished trial runs ({len(children)} trial runs in all)")
    trials = sorted(by_identity.values(), key=lambda t: (t.config_id, t.seed))
    return SweepRecord(sweep, uri, eid, parent.info.run_id, trials, notes, base_runs(client, eid, sweep))


def base_runs(client: MlflowClient, experiment_id: str, sweep: str) -> list[BaseRun]:
    """The sweep's FINISHED base runs, one per base key (the first of each), in key order."""
    by_key: dict[str, BaseRun] = {}
    runs = search_all(client, experiment_id, runs_filter(schema.ROLE_BASE, sweep))
    for run in sorted(runs, key=lambda r: r.info.start_time or 0):
        key = run.data.tags.get(schema.BASE_KEY, "")
        if run.info.status == "FINISHED" and key not in by_key:
            model = run.data.tags.get(schema.BASE_MODEL, "?")
            by_key[key] = BaseRun(run.info.run_id, key, model, dict(run.data.params), dict(run.data.metrics))
    return [by_key[k] for k in sorted(by_key)]
