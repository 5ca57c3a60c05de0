"""Write a sweep into MLflow exactly as :mod:`orchestration.tracking.schema` lays it out.

Identity is by tags, never by "the run I created earlier in this process": the sweep's experiment by
name, its parent run by (role, sweep), a trial's child run by (role, sweep, config_id, seed). Every
writer looks a run up before creating one, so a retried trial, a resumed sweep or a second driver
reopens the same run instead of adding a duplicate. Only the sweep driver and the trial drivers (never
the train workers) construct these objects.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from orchestration.tracking import schema
from orchestration.tracking.queries import quote, runs_filter, search_all
from orchestration.tracking.schema import metric_key
from orchestration.tracking.store import client_for

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

ATTEMPTS = "comol.attempts"  # tag: how many times the trial's training was started
PRUNED = "comol.pruned"  # tag: an early-stopping scheduler stopped the trial (its run ends KILLED)
SWEEP_KIND = "comol.search"  # tag on the parent run: grid or optuna
SPEC_ARTIFACT = "sweep/spec.yaml"  # the spec the sweep runs with now (its latest revision)
# A resume allowed to change the spec keeps every version: sweep/revisions/spec-0.yaml is the one the sweep was
# started with (its parent run's params, which MLflow cannot change, stay that one's).
SPEC_REVISIONS = "sweep/revisions"
SPEC_REVISION = "comol.spec_revision"  # tag on the parent run: how many times a resume changed the spec
SPEC_CHANGES = "comol.spec_changes"  # tag on the parent run: the fields the latest revision changed


def spec_yaml(spec: Mapping[str, Any]) -> str:
    """The spec as it is recorded (and compared when a sweep is resumed)."""
    return yaml.safe_dump(json.loads(json.dumps(dict(spec), default=str)), sort_keys=False)


def _numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if math.isfinite(float(value)):
            out[metric_key(key)] = float(value)
    return out


class SweepTracker:
    """The driver's side: the sweep's experiment and its one parent run."""

    def __init__(self, uri: str, sweep: str, artifact_location: str | None = None):
        self.uri = uri
        self.sweep = sweep
        self.artifact_location = artifact_location
        self.client = client_for(uri)
        self.experiment_id = ""
        self.parent_run_id = ""

    def ensure_experiment(self) -> str:
        from mlflow.exceptions import MlflowException

        name = schema.experiment_name(self.sweep)
        experiment = self.client.get_experiment_by_name(name)
        kind = {schema.EXPERIMENT_KIND: schema.EXPERIMENT_KIND_TRAINING}
        if experiment is None:
            try:
                self.experiment_id = self.client.create_experiment(
                    name, artifact_location=self.artifact_location, tags=kind
                )
            except MlflowException:  # created meanwhile by another driver
                self.experiment_id = self.client.get_experiment_by_name(name).experiment_id
        else:
            if experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            self.experiment_id = experiment.experiment_id
            if experiment.tags.get(schema.EXPERIMENT_KIND) is None:  # a sweep recorded before the tag existed
                self.client.set_experiment_tag(self.experiment_id, schema.EXPERIMENT_KIND, kind[schema.EXPERIMENT_KIND])
        return self.experiment_id

    def find_parent(self) -> Run | None:
        runs = search_all(self.client, self.experiment_id, runs_filter(schema.ROLE_SWEEP, self.sweep))
        return min(runs, key=lambda r: r.info.start_time or 0) if runs else None

    def ensure_parent(self, spec: Mapping[str, Any], kind: str, found: Run | None) -> str:
        """The sweep's parent run: ``found`` (what :meth:`find_parent` just returned, reopened) or, when that is
        None, a new one with the spec as params and as an artifact. The caller looks it up once for every use."""
        if not self.experiment_id:
            self.ensure_experiment()
        parent = found
        if parent is None:
            tags = {schema.ROLE: schema.ROLE_SWEEP, schema.SWEEP: self.sweep, SWEEP_KIND: kind}
            run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"sweep-{self.sweep}")
            self.parent_run_id = run.info.run_id
            _log_params(self.client, self.parent_run_id, schema.flatten({"sweep": dict(spec)}))
            self._log_text(SPEC_ARTIFACT, spec_yaml(spec))
        else:
            self.parent_run_id = parent.info.run_id
            if parent.info.status != "RUNNING":
                self.client.update_run(self.parent_run_id, status="RUNNING")
        return self.parent_run_id

    def _log_text(self, artifact: str, text: str) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact).name
            path.write_text(text)
            self.client.log_artifact(self.parent_run_id, str(path), str(Path(artifact).parent))

    def recorded_spec(self, parent: Run) -> dict[str, Any] | None:
        """The spec the sweep's ``parent`` run holds (its latest revision); None without the artifact."""
        from mlflow.exceptions import MlflowException

        with tempfile.TemporaryDirectory() as tmp, _no_progress_bar():
            try:
                local = self.client.download_artifacts(parent.info.run_id, SPEC_ARTIFACT, tmp)
            except (MlflowException, OSError):
                return None
            return yaml.safe_load(Path(local).read_text())

    def record_spec_revision(self, spec: Mapping[str, Any], changes: list[str]) -> int:
        """Make ``spec`` the sweep's current spec, keeping every earlier one; returns its revision number."""
        parent = self.client.get_run(self.parent_run_id)
        revision = int(parent.data.tags.get(SPEC_REVISION, "0")) + 1
        if revision == 1:
            self._log_text(f"{SPEC_REVISIONS}/spec-0.yaml", spec_yaml(self.recorded_spec(parent) or {}))
        self._log_text(f"{SPEC_REVISIONS}/spec-{revision}.yaml", spec_yaml(spec))
        self._log_text(SPEC_ARTIFACT, spec_yaml(spec))
        self.client.set_tag(self.parent_run_id, SPEC_REVISION, str(revision))
        self.client.set_tag(self.parent_run_id, SPEC_CHANGES, ", ".join(changes)[:5000])
        return revision

    def trial_runs(self) -> list[Run]:
        return search_all(self.client, self.experiment_id, runs_filter(schema.ROLE_TRIAL, self.sweep))

    def finished(self) -> dict[tuple[str, int], Run]:
        """FINISHED (or pruned) child runs by (config_id, seed): the trials a resume must not run again."""
        done: dict[tuple[str, int], Run] = {}
        for run in self.trial_runs():
            tags = run.data.tags
            if run.info.status == "FINISHED" or tags.get(PRUNED) == "true":
                done[(tags[schema.CONFIG_ID], int(tags[schema.SEED]))] = run
        return done

    # --- the base row: the untrained model, evaluated once per (model, evaluation) -----------------------
    def base_run(self, key: str) -> Run | None:
        """This sweep's FINISHED base run of ``key``, if it has one."""
        runs = search_all(self.client, self.experiment_id, _base_filter(self.sweep, key))
        return min(runs, key=lambda r: r.info.start_time or 0) if runs else None

    def base_run_elsewhere(self, key: str) -> Run | None:
        """A FINISHED base run of ``key`` in any sweep of this store (the newest): its evaluation can be reused."""
        experiments = [e.experiment_id for e in self.client.search_experiments(max_results=1000)]
        found = [r for eid in experiments for r in search_all(self.client, eid, _base_filter(None, key))]
        return max(found, key=lambda r: r.info.start_time or 0) if found else None

    def record_base(
        self,
        key: str,
        model: str,
        settings: Mapping[str, Any],
        metrics: Mapping[str, float],
        generations: Iterable[str | Path] = (),
        source_run: str | None = None,
    ) -> str:
        """One FINISHED base run under the parent: the untrained model's metrics, the settings they depend on
        (as params) and its generations; ``source_run`` names the run they were copied from."""
        tags = {
            schema.ROLE: schema.ROLE_BASE,
            schema.SWEEP: self.sweep,
            schema.BASE_KEY: key,
            schema.BASE_MODEL: model,
            schema.PARENT_RUN_ID: self.parent_run_id,
        } | ({schema.BASE_SOURCE: source_run} if source_run else {})
        run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"{self.sweep}-base-{key}")
        run_id = run.info.run_id
        _log_params(self.client, run_id, schema.flatten(dict(settings)))
        numeric = _numeric(metrics)
        if numeric:
            self.client.log_batch(run_id, metrics=_metric_entities(numeric, step=0))
        for path in generations:
            self.client.log_artifact(run_id, str(path), schema.GENERATIONS_DIR)
        self.client.set_terminated(run_id, status="FINISHED")
        return run_id

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        self.client.log_batch(self.parent_run_id, metrics=_metric_entities(_numeric(metrics), step=0))

    def log_configurations(self, rows: Iterable[Mapping[str, Any]], runs: Iterable[Run], metric: str) -> None:
        """What the UI shows of the configurations: per configuration the seed mean and std of ``metric`` on the
        parent run (NaN, for a single seed's std, is left out), the label → config_id table there, and each
        trial run's ``config_label`` tag, so "Group by" in the runs table gathers a configuration's seeds.
        ``rows``: label, config_id, seeds, mean, std per configuration (the sweep's summary)."""
        import pandas as pd

        rows = list(rows)
        stats = {}
        for row in rows:
            stats[schema.seed_stat_metric("seed_mean", row["label"], metric)] = row["mean"]
            stats[schema.seed_stat_metric("seed_std", row["label"], metric)] = row["std"]
        self.log_summary(stats)
        if rows:
            table = pd.DataFrame([{k: r[k] for k in ("label", "config_id", "seeds", "mean", "std")} for r in rows])
            table["metric"] = metric
            self.client.log_table(self.parent_run_id, table, schema.CONFIGURATIONS_TABLE)
        labels = {row["config_id"]: row["label"] for row in rows}
        for run in runs:
            label = labels.get(run.data.tags.get(schema.CONFIG_ID, ""))
            if label and run.data.tags.get(schema.CONFIG_LABEL) != label:
                self.client.set_tag(run.info.run_id, schema.CONFIG_LABEL, label)

    def end(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.parent_run_id, status=status)


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    """No MLflow download bar while the driver reads its own small record: the bar would land in the middle of
    the one paragraph a refused resume prints. MLflow reads the switch per download; it is restored at once."""
    previous = os.environ.get(_PROGRESS_BAR)
    os.environ[_PROGRESS_BAR] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_PROGRESS_BAR, None)
        else:
            os.environ[_PROGRESS_BAR] = previous


_PROGRESS_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def _base_filter(sweep: str | None, key: str) -> str:
    parts = [f"tags.`{schema.ROLE}` = {quote(schema.ROLE_BASE)}", f"tags.`{schema.BASE_KEY}` = {quote(key)}"]
    if sweep is not None:
        parts.append(f"tags.`{schema.SWEEP}` = {quote(sweep)}")
    return " and ".join([*parts, "attributes.status = 'FINISHED'"])


def _metric_entities(metrics: Mapping[str, float], step: int) -> list:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    return [Metric(key, value, now, step) for key, value in metrics.items()]


def _log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v[:6000]) for k, v in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


@dataclass
class TrialIdentity:
    uri: str
    experiment_id: str
    parent_run_id: str
    sweep: str
    config_id: str
    seed: int
    method: str
    base_model: str
    run_name: str


class TrialRecorder:
    """A trial driver's side: the child run of one (configuration, seed), found by tags or created once."""

    def __init__(self, identity: TrialIdentity):
        self.identity = identity
        self.client = client_for(identity.uri)
        self.run_id = ""
        self.status = ""
        self.existing_metrics: dict[str, float] = {}
        self.attempts = 0
        self.pruned = False

    def _matching(self) -> list[Run]:
        i = self.identity
        runs = search_all(self.client, i.experiment_id, runs_filter(schema.ROLE_TRIAL, i.sweep, i.config_id, i.seed))
        return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))

    def open(self) -> TrialRecorder:
        """Reopen the trial's run if it exists (the oldest, should a race have made two), else create it."""
        i = self.identity
        runs = self._matching()
        if not runs:
            tags = {
                schema.ROLE: schema.ROLE_TRIAL,
                schema.SWEEP: i.sweep,
                schema.CONFIG_ID: i.config_id,
                schema.SEED: str(i.seed),
                schema.METHOD: i.method,
                schema.BASE_MODEL: i.base_model,
                schema.PARENT_RUN_ID: i.parent_run_id,
                ATTEMPTS: "0",
            }
            created = self.client.create_run(i.experiment_id, tags=tags, run_name=i.run_name)
            runs = self._matching()
            for extra in runs[1:]:  # two drivers raced: keep the oldest, delete ours if it lost
                if extra.info.run_id == created.info.run_id:
                    self.client.delete_run(extra.info.run_id)
            runs = runs[:1]
        run = runs[0]
        self.run_id = run.info.run_id
        self.status = run.info.status
        self.existing_metrics = dict(run.data.metrics)
        self.attempts = int(run.data.tags.get(ATTEMPTS, "0"))
        self.pruned = run.data.tags.get(PRUNED) == "true"
        return self

    @property
    def finished(self) -> bool:
        """Done for good: FINISHED, or stopped early by the scheduler (a decision, not a failure)."""
        return self.status == "FINISHED" or self.pruned

    def start_attempt(self, params: Mapping[str, Any]) -> int:
        """Mark the run RUNNING, count this training attempt, log the flattened config as params."""
        self.attempts += 1
        self.client.update_run(self.run_id, status="RUNNING")
        self.client.set_tag(self.run_id, ATTEMPTS, str(self.attempts))
        _log_params(self.client, self.run_id, schema.flatten(params))
        self.status = "RUNNING"
        return self.attempts

    def log_step(self, metrics: Mapping[str, Any], step: int) -> None:
        numeric = _numeric({k: v for k, v in metrics.items() if k != "step"})
        if numeric:
            self.client.log_batch(self.run_id, metrics=_metric_entities(numeric, step))

    def log_final(self, metrics: Mapping[str, Any], step: int = 0) -> dict[str, float]:
        numeric = _numeric(metrics)
        if numeric:
            self.client.log_batch(self.run_id, metrics=_metric_entities(numeric, step))
        return numeric

    def log_config(self, config: Mapping[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(schema.CONFIG_ARTIFACT).name
            path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
            self.client.log_artifact(self.run_id, str(path), str(Path(schema.CONFIG_ARTIFACT).parent))

    def log_adapter(self, directory: str | Path) -> str:
        """The adapter folder as the run's ``adapter/`` artifact (what evaluation and older readers fetch) and as
        an MLflow Model linked to the run (what the registry points at and ``mlflow models serve`` runs).
        Returns the logged model's id."""
        from orchestration.serving.package import log_adapter_model

        i = self.identity
        self.client.log_artifacts(self.run_id, str(directory), schema.ADAPTER_ARTIFACT)
        tags = {schema.SWEEP: i.sweep, schema.CONFIG_ID: i.config_id, schema.SEED: str(i.seed), schema.METHOD: i.method}
        return log_adapter_model(
            self.client, i.experiment_id, self.run_id, directory, name=schema.ADAPTER_MODEL, tags=tags
        )

    def log_generations(self, files: Iterable[str | Path]) -> None:
        for path in files:
            self.client.log_artifact(self.run_id, str(path), schema.GENERATIONS_DIR)

    def end(self, status: str = "FINISHED", pruned: bool = False) -> None:
        if pruned:
            self.client.set_tag(self.run_id, PRUNED, "true")
        self.client.set_terminated(self.run_id, status=status)
        self.status = status
