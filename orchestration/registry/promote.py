"""``comol promote``: register a sweep's best configuration in the MLflow model registry and move an alias.

The best configuration is chosen by its seed mean, never by one lucky seed; what ships is the adapter
of its median seed, the run most representative of that mean. A gate (``gate.py``) lets it replace the
champion only when the report's own test says it is better; ``force`` overrides and is recorded. The
version's few tags identify it (sweep, config_id, seed, metric, mean, std, seeds, base model, method; the full
config stays on the run), its description is a short Markdown summary, and the alias's former holder keeps a
``previous`` alias so a rollback is one alias move.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from comol.errors import ConfigError
from comol.persistence import CONFIG_NAME
from orchestration.registry.gate import FORCED, PASSED, Decision, decide
from orchestration.registry.loading import run_model_id
from orchestration.tracking import schema
from orchestration.tracking.labels import configuration_labels
from orchestration.tracking.reader import SweepRecord, TrialRun, load_sweep, logged_metric_name
from orchestration.tracking.seeds import format_mean_std, seed_mean_std
from orchestration.tracking.store import open_store

DEFAULT_ALIAS = "champion"
PREVIOUS_ALIAS = "previous"

# Tags on the registered model version.
TAG_SWEEP = "comol.sweep"
TAG_CONFIG_ID = "comol.config_id"
TAG_SEED = "comol.seed"
TAG_METRIC = "comol.metric"
TAG_MEAN = "comol.metric_mean"
TAG_STD = "comol.metric_std"
TAG_SEEDS = "comol.seeds"
TAG_BASE_MODEL = "comol.base_model"
TAG_METHOD = "comol.method"
TAG_GATE = "comol.gate"  # passed, or forced (promoted although the gate refused)


@dataclass
class Choice:
    """The configuration with the best seed mean, and its median seed's run."""

    config_id: str
    label: str
    mean: float
    std: float
    seeds: int
    run: TrialRun
    run_value: float
    ranking: pd.DataFrame  # every eligible configuration: mean, std, seeds (best first)


@dataclass
class Promotion:
    choice: Choice
    model_name: str
    version: str | None  # None when nothing was registered (refused, dry run)
    alias: str
    previous_alias: str | None
    previous_version: str | None  # the former holder of ``alias``
    created: bool  # a version was registered and the alias moved
    decision: Decision | None = None  # the gate's (None when the alias already held this very run)
    forced: bool = False  # promoted although the gate refused
    dry_run: bool = False

    @property
    def refused(self) -> bool:
        return self.decision is not None and not self.decision.passed and not self.forced


def previous_alias_for(alias: str) -> str:
    """``champion`` → ``previous``; any other alias → ``<alias>-previous`` so two aliases never share it."""
    return PREVIOUS_ALIAS if alias == DEFAULT_ALIAS else f"{alias}-{PREVIOUS_ALIAS}"


def median_run(runs: list[TrialRun], metric: str) -> tuple[TrialRun, float]:
    """The seed whose metric is the median; for an even count the lower of the two middle ones.

    Ties are broken by seed so the choice is reproducible.
    """
    ordered = sorted(runs, key=lambda t: (t.metrics[metric], t.seed))
    chosen = ordered[(len(ordered) - 1) // 2]
    return chosen, chosen.metrics[metric]


def choose(record: SweepRecord, metric: str, mode: str = "max") -> Choice:
    """Best configuration by seed mean of ``metric`` (ties: smaller std, then config_id)."""
    if mode not in {"max", "min"}:
        raise ConfigError("mode", f"must be max or min, got {mode!r}", allowed=["max", "min"])
    metric = logged_metric_name(metric, set().union(*(t.metrics for t in record.trials)))
    having = [t for t in record.trials if metric in t.metrics and math.isfinite(t.metrics[metric])]
    if not having:
        logged = sorted(set().union(*(t.metrics for t in record.trials)))
        raise ConfigError(
            "metric",
            f"no finished run of sweep {record.sweep!r} has metric {metric!r}",
            allowed=[m for m in logged if m.startswith("eval/")] or logged,
        )
    by_config: dict[str, list[TrialRun]] = {}
    for trial in having:
        by_config.setdefault(trial.config_id, []).append(trial)
    stats = {c: seed_mean_std(t.metrics[metric] for t in ts) for c, ts in by_config.items()}
    frame = pd.DataFrame(
        {
            "mean": {c: mean for c, (mean, _) in stats.items()},
            "std": {c: std for c, (_, std) in stats.items()},
            "seeds": {c: len(ts) for c, ts in by_config.items()},
        }
    )
    frame["order"] = -frame["mean"] if mode == "max" else frame["mean"]
    frame["std_order"] = frame["std"].fillna(math.inf)
    frame = frame.rename_axis("config_id").reset_index()
    frame = frame.sort_values(["order", "std_order", "config_id"]).set_index("config_id")
    best = frame.index[0]
    labels = configuration_labels((t.config_id, t.method, t.params) for t in record.trials)
    frame["label"] = [labels[c] for c in frame.index]
    run, value = median_run(by_config[best], metric)
    row = frame.loc[best]
    return Choice(
        best,
        labels[best],
        float(row["mean"]),
        float(row["std"]),
        int(row["seeds"]),
        run,
        float(value),
        frame.drop(columns=["order", "std_order"]),
    )


def _has_adapter(client, run: TrialRun) -> bool:
    names = {f.path.rsplit("/", 1)[-1] for f in client.list_artifacts(run.run_id, schema.ADAPTER_ARTIFACT)}
    return CONFIG_NAME in names


def _version_tags(record: SweepRecord, choice: Choice, metric: str, forced: bool) -> dict[str, str]:
    run = choice.run
    return {
        TAG_SWEEP: record.sweep,
        TAG_CONFIG_ID: choice.config_id,
        TAG_SEED: str(run.seed),
        TAG_METRIC: metric,
        TAG_MEAN: repr(choice.mean),
        TAG_STD: repr(choice.std),
        TAG_SEEDS: str(choice.seeds),
        TAG_BASE_MODEL: run.base_model or "",
        TAG_METHOD: run.method,
        TAG_GATE: FORCED if forced else PASSED,
    }


def _links(record: SweepRecord, run_id: str) -> str:
    """Links to the sweep's experiment and the run in the MLflow UI (an HTTP store), else their ids."""
    uri = record.tracking_uri.rstrip("/")
    if uri.startswith(("http://", "https://")):
        experiment = schema.ui_experiment_link(uri, record.experiment_id)
        run = f"{uri}/#/experiments/{record.experiment_id}/runs/{run_id}"
        return f"[sweep {record.sweep}]({experiment}) · [run {run_id}]({run})"
    return f"sweep {record.sweep} (experiment {record.experiment_id}) · run {run_id}"


def describe(record: SweepRecord, choice: Choice, metric: str, decision: Decision, forced: bool) -> str:
    """The version's Markdown description: what it is, how good, compared with what, where it comes from."""
    lines = [
        f"**{choice.label}** (config `{choice.config_id}`): {metric} "
        f"**{format_mean_std(choice.mean, choice.std)}** (mean ± sample std over {choice.seeds} seeds); "
        f"adapter of the median seed {choice.run.seed}.",
        "",
    ]
    first = "- no champion to compare with: the first version under this alias"
    lines += [f"- {o.line()}" for o in decision.opponents] or [first]
    lines += [f"- {note}" for note in decision.notes]
    if forced:
        lines += ["", f"**Forced** past the promotion gate: {decision.reason()}."]
    lines += ["", _links(record, choice.run.run_id)]
    return "\n".join(lines)


def _alias_holder(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def promote(
    sweep: str,
    model_name: str,
    alias: str = DEFAULT_ALIAS,
    metric: str = schema.METRIC_AVERAGE,
    tracking_uri: str | None = None,
    mode: str = "max",
    force: bool = False,
    dry_run: bool = False,
) -> Promotion:
    """Register the best configuration's median-seed adapter as a new version and point ``alias`` at it, if
    the gate passes it (or ``force``). ``dry_run``: decide and return, writing nothing.

    All checks (sweep, runs, metric, adapter artifact) and the gate run before the registry is touched.
    """
    from mlflow.exceptions import MlflowException

    if not model_name:
        raise ConfigError("model-name", "must be a non-empty registered model name")
    if not alias or alias == PREVIOUS_ALIAS or alias.endswith(f"-{PREVIOUS_ALIAS}") or alias.lower() == "latest":
        raise ConfigError("alias", f"{alias!r} cannot be promoted to: it is reserved")
    client = open_store(tracking_uri)
    record = load_sweep(client, sweep)
    choice = choose(record, metric, mode)
    if not _has_adapter(client, choice.run):
        raise ConfigError(
            "adapter",
            f"run {choice.run.run_id} (config {choice.config_id}, seed {choice.run.seed}) has no "
            f"{schema.ADAPTER_ARTIFACT}/{CONFIG_NAME} artifact to register",
        )
    former = _alias_holder(client, model_name, alias)
    if former is not None and former.run_id == choice.run.run_id:
        return Promotion(choice, model_name, former.version, alias, None, None, created=False, dry_run=dry_run)
    decision = decide(client, record, choice, former, metric, mode)
    forced = force and not decision.passed
    outcome = Promotion(choice, model_name, None, alias, None, None, False, decision, forced=forced, dry_run=dry_run)
    if dry_run or outcome.refused:
        return outcome
    try:
        client.create_registered_model(
            model_name, description="CoMoL adapters promoted from comol sweeps (MLflow Models; see versions)."
        )
    except MlflowException as err:
        if err.error_code not in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}:
            raise
    model_id = run_model_id(client, choice.run.run_id)
    # The adapter's MLflow Model (pyfunc-loadable, servable), or for a run recorded before adapters were MLflow
    # Models, the plain adapter folder.
    folder = f"{choice.run.artifact_uri.rstrip('/')}/{schema.ADAPTER_ARTIFACT}"
    source = f"models:/{model_id}" if model_id else folder
    version = client.create_model_version(
        model_name,
        source=source,
        run_id=choice.run.run_id,
        model_id=model_id,
        tags=_version_tags(record, choice, metric, forced),
        description=describe(record, choice, metric, decision, forced),
    )
    previous = previous_alias_for(alias)
    if former is not None:
        client.set_registered_model_alias(model_name, previous, former.version)
    client.set_registered_model_alias(model_name, alias, version.version)
    outcome.version = str(version.version)
    outcome.previous_alias = previous if former is not None else None
    outcome.previous_version = str(former.version) if former is not None else None
    outcome.created = True
    return outcome
