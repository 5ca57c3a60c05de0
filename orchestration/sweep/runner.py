"""Run a sweep: validate everything, open its MLflow record, run the missing trials on Ray Tune, summarise.

Data flows one way: YAML → :class:`SweepSpec` → :class:`TrialPlan` per (configuration, seed) → Tune trial
→ MLflow child run → the summary printed here (and any report read from MLflow later). MLflow is the
source of truth for what is done: a resumed sweep skips every (config_id, seed) whose run FINISHED, so an
interrupted sweep neither re-runs finished trials nor duplicates runs.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from comol.errors import ConfigError
from orchestration.ray_session import RaySession, connect_ray
from orchestration.sweep.space import SweepPlan, TrialPlan, plan
from orchestration.sweep.spec import SweepSpec, load_spec
from orchestration.tracking import schema
from orchestration.tracking.labels import base_labels, configuration_labels
from orchestration.tracking.schema import metric_key
from orchestration.tracking.seeds import format_mean_std, seed_mean_std
from orchestration.tracking.store import default_tracking_uri, resolve_tracking_uri
from orchestration.tracking.writer import SweepTracker, spec_yaml

TRIAL_MEMORY_ENTRY = "train"  # the entry whose trials hold no CPU (their train workers hold it)
# Ray storage (Tune and Train storage_path) for a cluster: s3://bucket (or a folder every node mounts).
STORAGE_ENV = "COMOL_STORAGE_PATH"


@dataclass
class SweepPaths:
    sweep_dir: Path
    train_dir: Path | str  # Ray storage: <sweep dir>/train, or $COMOL_STORAGE_PATH/<name>/train (may be s3://…)
    tune_dir: Path | str


@dataclass
class SweepResult:
    name: str
    uri: str
    experiment_id: str
    parent_run_id: str
    planned: int  # (configuration, seed) trials; Optuna: configurations × seeds
    finished: int
    ran: int  # trials this invocation completed (cached ones excluded)
    failed: int
    wall_s: float
    rows: list[dict[str, Any]] = field(default_factory=list)  # one per configuration: seed mean ± std
    base_rows: list[dict[str, Any]] = field(default_factory=list)  # the untrained model: label, value (base_row.py)
    phases: dict[str, float] = field(default_factory=dict)  # seconds: plan, mlflow, ray_start, tune, summary, …

    @property
    def complete(self) -> bool:
        return self.finished >= self.planned and self.failed == 0


def resolve_tracking(spec: SweepSpec, override: str | None) -> tuple[str, str | None]:
    """(tracking URI, artifact location for a new experiment): the URI as every command resolves it."""
    uri = resolve_tracking_uri(override, spec.tracking.uri)
    artifacts = spec.tracking.artifact_location
    if artifacts is None and uri.startswith(("sqlite:///", "file:")):
        artifacts = str(Path.cwd().resolve() / "mlartifacts")
    elif artifacts is not None and "://" not in artifacts:
        artifacts = str(Path(artifacts).expanduser().resolve())
    return uri, artifacts


def sweep_paths(spec: SweepSpec, override: str | None) -> SweepPaths:
    root = Path(override or spec.output_dir or Path.cwd() / "outputs" / "sweeps" / spec.name).expanduser().resolve()
    # Checked here, before MLflow or Ray: a file in the way would otherwise fail the sweep after its experiment
    # and parent run were created.
    blocking = next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        field = "--output-dir" if override else "output_dir"
        raise ConfigError(field, f"{root} cannot be the sweep folder: {blocking} is a file, not a folder")
    storage = os.environ.get(STORAGE_ENV, "").strip()
    if not storage:
        return SweepPaths(root, root / "train", root / "tune")
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    base = f"{storage.rstrip('/')}/{spec.name}"
    return SweepPaths(root, f"{base}/train", f"{base}/tune")


def prepare(spec_path: str | Path, output_dir: str | None = None) -> tuple[SweepSpec, SweepPaths, SweepPlan]:
    """Everything that can fail on bad input, done before Ray or MLflow are touched."""
    spec = load_spec(spec_path)
    return prepare_spec(spec, output_dir)


def prepare_spec(spec: SweepSpec, output_dir: str | None = None) -> tuple[SweepSpec, SweepPaths, SweepPlan]:
    paths = sweep_paths(spec, output_dir)
    return spec, paths, plan(spec, str(paths.train_dir))


# --- Ray ------------------------------------------------------------------------------------------
def trial_demand(sweep_plan: SweepPlan) -> tuple[float, float]:
    """(CPUs, GPUs) one trial's train workers hold (as its validated config says; every trial of a sweep has the
    same resources); a smoke trial computes in its driver on one CPU."""
    if sweep_plan.spec.entry != TRIAL_MEMORY_ENTRY:
        return 1.0, 0.0
    resources = sweep_plan.example.train.resources
    return resources.num_workers * resources.cpus_per_worker, resources.num_workers * resources.gpus_per_worker


def concurrency(sweep_plan: SweepPlan) -> int:
    """Trials at once: the spec's cap, else as many as the cluster's CPUs and GPUs fit."""
    import ray

    spec = sweep_plan.spec
    cpus, gpus = trial_demand(sweep_plan)
    available = ray.cluster_resources()
    fits = []
    if cpus > 0:
        fits.append(int(available.get("CPU", 0) // cpus))
    if gpus > 0:
        fits.append(int(available.get("GPU", 0) // gpus))
    derived = max(1, min(fits) if fits else 1)
    cap = spec.resources.max_concurrent_trials
    return min(cap, derived) if cap else derived


def trial_resources(spec: SweepSpec) -> dict[str, float]:
    if spec.entry == TRIAL_MEMORY_ENTRY:  # the trial driver only waits on its TorchTrainer
        return {"CPU": 0, "memory": spec.resources.trial_memory_mb * 2**20}
    return {"CPU": 1}


# --- the sweep ------------------------------------------------------------------------------------
def _summary_rows(done: dict[tuple[str, int], Any], spec: SweepSpec) -> list[dict[str, Any]]:
    """One row per configuration from its FINISHED runs (of ``SweepTracker.finished``): its label and the metric's
    seed mean ± std, best first."""
    metric = metric_key(spec.metric)
    by_config: dict[str, list[Any]] = {}
    for (config_id, _seed), run in sorted(done.items()):
        if run.info.status == "FINISHED":
            by_config.setdefault(config_id, []).append(run)
    names = configuration_labels(
        (cid, run.data.tags.get(schema.METHOD, "?"), run.data.params) for cid, runs in by_config.items() for run in runs
    )
    rows = []
    for config_id, runs in by_config.items():
        mean, std = seed_mean_std(r.data.metrics[metric] for r in runs if metric in r.data.metrics)
        trainable = runs[0].data.metrics.get(schema.METRIC_TRAINABLE, math.nan)
        row = {"config_id": config_id, "label": names[config_id], "seeds": len(runs), "mean": mean, "std": std}
        rows.append({**row, "trainable": trainable})
    sign = -1.0 if spec.mode == "max" else 1.0
    rows.sort(key=lambda r: (math.isnan(r["mean"]), sign * r["mean"] if not math.isnan(r["mean"]) else 0.0))
    return rows


def base_summary_rows(record: _Record, spec: SweepSpec) -> list[dict[str, Any]]:
    """The untrained model's row(s): its score on the sweep's metric (when it has one), labelled by what it is."""
    from orchestration.tracking.reader import base_runs

    if not record.has_base:
        return []
    metric = metric_key(spec.metric)
    runs = base_runs(record.tracker.client, record.tracker.experiment_id, spec.name)
    names = base_labels([run.params for run in runs])
    return [
        {"label": name, "key": run.key, "value": run.metrics.get(metric, math.nan)}
        for run, name in zip(runs, names, strict=True)
    ]


def summarise(
    tracker: SweepTracker, spec: SweepSpec, planned: int, done: dict | None = None
) -> tuple[int, list[dict[str, Any]]]:
    """Log the sweep's summary on its parent run from MLflow's record (the source of truth): counts, the best seed
    mean, and per configuration its seed statistics and label (``SweepTracker.log_configurations``). Returns the
    number of finished trials and the summary rows, best first. ``done``: the finished runs when the caller has
    them (a resume with nothing to run: the search that planned it is the record, and over hundreds of runs a
    search costs seconds); else one search of the trial runs for the count, the table and the labels."""
    done = tracker.finished() if done is None else done
    rows = _summary_rows(done, spec)
    tracker.log_summary({"sweep/trials_finished": len(done), "sweep/trials_planned": planned})
    if rows and not math.isnan(rows[0]["mean"]):
        tracker.log_summary({f"sweep/best/{metric_key(spec.metric)}": rows[0]["mean"]})
    tracker.log_configurations(rows, done.values(), metric_key(spec.metric))
    return len(done), rows


def results_table(rows: list[dict[str, Any]], metric: str, base: list[dict[str, Any]] = ()) -> Table:
    """The summary: one row per configuration, best first, then the untrained model as the reference row."""
    table = Table(title=f"{metric}: mean ± std over seeds, best first; the untrained model last, as the reference")
    table.add_column("configuration", no_wrap=True)  # a label is read whole: let rich shrink another column
    table.add_column("seeds", justify="right")
    table.add_column(metric, justify="right", no_wrap=True)
    table.add_column("trainable", justify="right")
    table.add_column("config_id")
    for r in rows:
        trainable = f"{r['trainable']:,.0f}" if not math.isnan(r["trainable"]) else "?"
        score = format_mean_std(r["mean"], r["std"])
        table.add_row(r["label"], str(r["seeds"]), score, trainable, r["config_id"])
    if rows and base:
        table.add_section()
    for r in base:
        value = "–" if math.isnan(r["value"]) else f"{r['value']:.4f}"  # one greedy evaluation: no spread
        table.add_row(r["label"], "–", value, "0", f"base {r['key']}")
    return table


def where_to_look(uri: str, experiment: str, experiment_id: str, parent_run_id: str) -> list[str]:
    lines = [
        f"MLflow tracking URI: {uri}",
        f"experiment: {experiment} (id {experiment_id}), parent run {parent_run_id}",
    ]
    if uri.startswith(("http://", "https://")):
        lines.append(f"open {schema.ui_experiment_link(uri, experiment_id)}")
    else:
        lines.append(f"mlflow ui --backend-store-uri {uri}")
        lines.append(f"then open {schema.ui_experiment_link('http://127.0.0.1:5000', experiment_id)}")
    return lines


@dataclass
class _Record:
    """The sweep's MLflow record and what is left to run, as found when the sweep starts."""

    tracker: SweepTracker
    parent_run_id: str
    planned: int
    already: int
    remaining: list[TrialPlan]  # grid: the trials still to run
    to_run: int
    done: dict[tuple[str, int], Any]  # the finished runs found (SweepTracker.finished): still the record if none ran
    optuna: Any = None  # OptunaState
    base_todo: list[Any] = field(default_factory=list)  # base_row.BasePlan: untrained evaluations still to record
    has_base: bool = False  # the sweep plans a base row at all (else there is no base run to look for)


# What a resumed sweep may change without it becoming another sweep: which seeds run, how many trials at once, and
# an Optuna search's budget (more configurations drawn from the same space).
RESUMABLE_CHANGES = ("seeds", "resources.max_concurrent_trials", "search.optuna.num_samples")


def spec_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """The dotted fields in which ``current`` differs from the ``recorded`` spec (both as recorded), leaving out
    ``RESUMABLE_CHANGES``."""
    old = schema.flatten(yaml.safe_load(spec_yaml(recorded)) or {})
    new = schema.flatten(yaml.safe_load(spec_yaml(current)) or {})
    changed = {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
    return sorted(k for k in changed if not any(k == r or k.startswith(f"{r}.") for r in RESUMABLE_CHANGES))


def _open_record(
    spec: SweepSpec,
    sweep_plan: SweepPlan,
    paths: SweepPaths,
    uri: str,
    artifacts: str | None,
    resume: bool,
    allow_spec_change: bool = False,
) -> _Record:
    """Experiment, parent run, finished trials (and the Optuna study): MLflow decides what is still to do."""
    from orchestration.sweep.base_row import base_plans, missing
    from orchestration.sweep.search import optuna_searcher

    tracker = SweepTracker(uri, spec.name, artifacts)
    tracker.ensure_experiment()
    parent = tracker.find_parent()  # once: the resume check, the recorded spec and the parent itself use it
    if parent is not None and not resume:
        raise ConfigError(
            "--resume",
            f"sweep {spec.name!r} already has a record in {uri}; pass --resume to continue it "
            "(finished trials are not re-run), or give the sweep another name",
        )
    current = spec.model_dump(mode="json")
    recorded = tracker.recorded_spec(parent) if resume and parent is not None else None
    changes = spec_changes(recorded, current) if recorded is not None else []
    if changes and not allow_spec_change:  # checked before the record is touched
        raise ConfigError(
            "--resume",
            f"the spec differs from the one sweep {spec.name!r} was recorded with in {uri}, in "
            f"{', '.join(changes)}; resuming would mix two sweeps in one record. Restore those fields, give the "
            "sweep another name, or pass --allow-spec-change to record this spec as a new revision",
        )
    parent_run_id = tracker.ensure_parent(current, spec.search.kind, found=parent)
    if changes:
        tracker.record_spec_revision(current, changes)
    paths.sweep_dir.mkdir(parents=True, exist_ok=True)
    done = tracker.finished()
    plans = base_plans(sweep_plan, str(paths.train_dir))
    base_todo = missing(plans, tracker)
    if spec.search.kind == "grid":
        remaining = [t for t in sweep_plan.trials if (t.config_id, t.seed) not in done]
        planned = len(sweep_plan.trials)
        return _Record(
            tracker,
            parent_run_id,
            planned,
            planned - len(remaining),
            remaining,
            len(remaining),
            done,
            base_todo=base_todo,
            has_base=bool(plans),
        )
    state = optuna_searcher(spec, paths.sweep_dir)
    planned = spec.search.optuna.num_samples * len(spec.seeds)
    to_run = state.remaining * len(spec.seeds)
    return _Record(tracker, parent_run_id, planned, planned - to_run, [], to_run, done, state, base_todo, bool(plans))


def _tuner(sweep_plan: SweepPlan, record: _Record, context: Any, progress: Any, paths: SweepPaths) -> Any:
    """The Tuner: a grid over the missing trial keys, or Repeater(Optuna) (+ ASHA) for the remaining budget."""
    from ray import tune

    from orchestration.sweep.search import asha_scheduler
    from orchestration.sweep.trainable import run_trial

    spec = sweep_plan.spec
    trainable = tune.with_resources(tune.with_parameters(run_trial, context=context), trial_resources(spec))
    common = dict(
        max_concurrent_trials=concurrency(sweep_plan),
        reuse_actors=True,  # a trial driver costs seconds of imports: keep it for the next trial
        trial_name_creator=_trial_name,
        trial_dirname_creator=_trial_name,
    )
    if spec.search.kind == "grid":
        tune_config = tune.TuneConfig(num_samples=1, **common)
        param_space: dict[str, Any] = {"trial": tune.grid_search([t.key for t in record.remaining])}
    else:
        tune_config = tune.TuneConfig(
            search_alg=record.optuna.searcher, scheduler=asha_scheduler(spec), num_samples=record.to_run, **common
        )
        param_space = {}
    run_config = tune.RunConfig(
        name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
        storage_path=str(paths.tune_dir),
        failure_config=tune.FailureConfig(max_failures=spec.resources.max_failures),
        callbacks=[progress],
        verbose=0,
    )
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)


def run_sweep(
    spec: SweepSpec,
    *,
    resume: bool = False,
    allow_spec_change: bool = False,
    tracking_uri: str | None = None,
    output_dir: str | None = None,
    address: str | None = None,
    ray_temp_dir: str | None = None,
    verbose: bool = False,
    console: Console | None = None,
) -> SweepResult:
    """Validate, open the MLflow record, run what is missing, summarise. Raises ConfigError on bad input."""
    from concurrent.futures import ThreadPoolExecutor

    console = console or Console()
    started = mark = time.perf_counter()
    phases: dict[str, float] = {}

    def phase(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = phases.get(name, 0.0) + now - mark
        mark = now

    spec, paths, sweep_plan = prepare_spec(spec, output_dir)  # every trial validated: nothing started yet
    uri, artifacts = resolve_tracking(spec, tracking_uri)
    if uri == default_tracking_uri() and (address or os.environ.get("RAY_ADDRESS")):
        console.print(
            f"[yellow]note:[/] tracking to {uri}, in this job's working directory; give the spec a tracking.uri "
            "(or --tracking-uri) of a server or shared path to keep the record outside the job"
        )
    phase("plan")
    handle: RaySession | None = None
    if resume:  # the record decides whether Ray is needed at all
        record = _open_record(spec, sweep_plan, paths, uri, artifacts, resume, allow_spec_change)
        phase("mlflow")
    else:  # a new sweep always has trials to run: start Ray while MLflow is being set up
        with ThreadPoolExecutor(1, thread_name_prefix="comol-mlflow") as pool:
            opening = pool.submit(_open_record, spec, sweep_plan, paths, uri, artifacts, resume)
            handle = connect_ray(address, verbose=verbose, temp_dir=ray_temp_dir)
            try:
                record = opening.result()
            except BaseException:
                handle.close()
                raise
        phase("mlflow_and_ray_start")
    console.print(
        f"[bold]sweep {spec.name}[/] ({spec.search.kind}): {record.planned} trials planned, {record.already} "
        f"already finished in MLflow, {record.to_run} to run"
    )
    if record.optuna is not None and (record.optuna.told or record.optuna.requeued):
        console.print(
            f"optuna study resumed: {record.optuna.told} configurations learned, "
            f"{record.optuna.requeued} interrupted ones enqueued again"
        )

    failed = ran = 0
    if record.to_run or record.base_todo:
        if handle is None:
            handle = connect_ray(address, verbose=verbose, temp_dir=ray_temp_dir)
            phase("ray_start")
        from orchestration.sweep.trainable import SweepContext  # Ray Tune: imported only when trials run

        try:
            _base_rows(record, console, paths)
            phase("base_model")
            context = SweepContext(
                spec=spec,
                uri=uri,
                experiment_id=record.tracker.experiment_id,
                parent_run_id=record.parent_run_id,
                sweep_dir=str(paths.sweep_dir),
                train_dir=str(paths.train_dir),
                trials={t.key: t for t in record.remaining},
            )
            if record.to_run:
                failed, ran = _run_trials(sweep_plan, record, context, paths, console, phase)
        finally:
            logs = handle.close(keep_logs=failed > 0)
            if logs:
                console.print(f"Ray logs of the failed trials kept in {logs}")
            phase("ray_stop")
    elif handle is not None:
        handle.close()
    return _finish(spec, record, uri, ran, failed, started, phases, phase)


def _base_rows(record: _Record, console: Console, paths: SweepPaths) -> None:
    """The untrained model's evaluation, before the trials (it needs the same workers). A failure is reported
    and the trials run on: they are the sweep's result, the base row only their reference."""
    from orchestration.sweep.base_row import record_base_rows

    if not record.base_todo:
        return
    try:
        record_base_rows(record.base_todo, record.tracker, console, paths.sweep_dir)
    except Exception as err:  # reported; the summary then shows no base row
        console.print(f"[red]base-model evaluation failed[/] ({type(err).__name__}: {err}); the trials run on")


def _run_trials(
    sweep_plan: SweepPlan, record: _Record, context: Any, paths: SweepPaths, console: Console, phase: Any
) -> tuple[int, int]:
    """Tune over the missing trials: (failed, ran)."""
    from orchestration.sweep.progress import SweepProgress

    spec = sweep_plan.spec
    progress = SweepProgress(context, record.planned, record.already, metric_key(spec.metric), console)
    tuner = _tuner(sweep_plan, record, context, progress, paths)
    phase("tune_setup")
    try:
        results = tuner.fit()
    finally:
        progress.close()
    phase("tune")
    failed = sum(1 for r in results if r.error is not None)
    ran = sum(1 for r in results if r.error is None and (r.metrics or {}).get("trial/cached") == 0)
    return failed, ran


def _finish(
    spec: SweepSpec, record: _Record, uri: str, ran: int, failed: int, started: float, phases: dict, phase: Any
) -> SweepResult:
    """Summarise from MLflow (the source of truth) and close the parent run."""
    tracker = record.tracker
    # none when nothing ran (a resume of a finished sweep): the search that planned it is the record
    done = None if ran or failed or record.to_run else record.done
    finished, rows = summarise(tracker, spec, record.planned, done)
    result = SweepResult(
        spec.name, uri, tracker.experiment_id, record.parent_run_id, record.planned, finished, ran, failed, 0.0, rows
    )
    result.base_rows = base_summary_rows(record, spec)
    tracker.end("FINISHED" if result.complete else "FAILED")
    phase("summary")
    result.phases = phases
    result.wall_s = time.perf_counter() - started
    return result


def _trial_name(trial: Any) -> str:
    config = trial.config
    if "trial" in config:
        return str(config["trial"])
    return f"{trial.trial_id}-i{config.get('__trial_index__', 0)}"
