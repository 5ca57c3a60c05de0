"""Runs → one row per configuration: mean and sample std over seeds for every benchmark.

Pure functions of a :class:`SweepRecord` (no MLflow here): the seed statistic is
:func:`orchestration.tracking.seeds.seed_mean_std`'s and the row labels are
:mod:`orchestration.tracking.labels`', the same the sweep's summary and promotion use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from orchestration.evaluation.math_datasets import MATH_BENCHMARKS
from orchestration.tracking import labels, schema
from orchestration.tracking.reader import SweepRecord
from orchestration.tracking.seeds import seed_mean, seed_std

# The paper's column order for its math benchmarks; other benchmarks follow alphabetically.
BENCHMARK_TITLES = {dataset.key: dataset.title for dataset in MATH_BENCHMARKS}
_ACCURACY = re.compile(r"^eval/(?P<name>[^/]+)/accuracy$")
# The sweep writer spells ``pass@k`` as ``pass_at_k`` (MLflow 3 refuses '@' in metric names); read both.
_PASS_AT = re.compile(r"^eval/humaneval/pass(?:@|_at_)(?P<k>\d+)$")


@dataclass(frozen=True)
class Column:
    """One table column: an MLflow metric (``eval/average`` may be computed from the accuracies)."""

    metric: str
    title: str
    computed: bool = False


def benchmark_columns(metric_names: set[str]) -> list[Column]:
    """Benchmarks the runs logged, in the paper's order, followed by the Average column."""
    accuracies = [m for m in metric_names if _ACCURACY.match(m)]
    order = list(BENCHMARK_TITLES)

    def key(metric: str) -> tuple[int, str]:
        name = _ACCURACY.match(metric)["name"].lower()
        return (order.index(name) if name in order else len(order), name)

    columns = []
    for metric in sorted(accuracies, key=key):
        name = _ACCURACY.match(metric)["name"]
        columns.append(Column(metric, BENCHMARK_TITLES.get(name.lower(), name)))
    passes = sorted((m for m in metric_names if _PASS_AT.match(m)), key=lambda m: int(_PASS_AT.match(m)["k"]))
    columns += [Column(m, f"HumanEval pass@{_PASS_AT.match(m)['k']}") for m in passes]
    if schema.METRIC_AVERAGE in metric_names:
        columns.append(Column(schema.METRIC_AVERAGE, "Average"))
    elif len(accuracies) >= 2:  # the paper's headline: the unweighted mean of the accuracies
        columns.append(Column(schema.METRIC_AVERAGE, "Average", computed=True))
    return columns


def config_params(frame: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Per configuration, the params all its seeds share (see :func:`labels.shared_params`)."""
    return {
        cid: labels.shared_params(str(group["method"].iloc[0]), list(group["params"]))
        for cid, group in frame.groupby("config_id", sort=False)
    }


def runs_frame(record: SweepRecord) -> tuple[pd.DataFrame, list[Column]]:
    """One row per finished run (identity, params, every final metric) and the table's columns."""
    rows = []
    for t in record.trials:
        rows.append(
            {
                "run_id": t.run_id,
                "config_id": t.config_id,
                "seed": t.seed,
                "method": t.method,
                "base_model": t.base_model,
                "params": t.params,
                **t.metrics,
            }
        )
    frame = pd.DataFrame(rows)
    columns = benchmark_columns(set().union(*(t.metrics for t in record.trials)))
    accuracy_metrics = [c.metric for c in columns if _ACCURACY.match(c.metric)]
    if any(c.computed for c in columns):
        frame[schema.METRIC_AVERAGE] = frame[accuracy_metrics].mean(axis=1, skipna=False)
    for metric in (schema.METRIC_TRAINABLE, schema.METRIC_FLOPS, schema.METRIC_TRAIN_TIME):
        if metric not in frame:
            frame[metric] = float("nan")
    return frame, columns


def _axis(params: dict[str, str], name: str) -> float | None:
    return labels.parse_number(params.get(name))


def aggregate(frame: pd.DataFrame, columns: list[Column]) -> pd.DataFrame:
    """One row per configuration (index ``config_id``): label, axes, seeds, ``<metric> mean/std`` (seed statistic),
    trainable params, adapter FLOPs/token and mean training time."""
    metrics = [c.metric for c in columns]
    grouped = frame.groupby("config_id", sort=False)
    means = grouped[metrics].agg(seed_mean)
    stds = grouped[metrics].agg(seed_std)
    table = pd.DataFrame(index=means.index)
    params = config_params(frame)
    methods = grouped["method"].first().to_dict()
    table["label"] = pd.Series(labels.unique_labels(methods, params))
    table["method"] = pd.Series(methods)
    table["rank"] = pd.Series({c: _axis(p, labels.RANK) for c, p in params.items()}, dtype=float)
    experts = {c: _axis(p, labels.EXPERTS) if methods[c] != "lora" else None for c, p in params.items()}
    table["experts"] = pd.Series(experts, dtype=float)
    table["core_routing"] = pd.Series({c: labels.parse_bool(p.get(labels.CORE_ROUTING)) for c, p in params.items()})
    table["base_model"] = grouped["base_model"].first()
    table["seeds"] = grouped["seed"].count()
    table["seed_list"] = grouped["seed"].apply(lambda s: ",".join(str(v) for v in sorted(s)))
    for metric in metrics:
        table[f"{metric} mean"] = means[metric]
        table[f"{metric} std"] = stds[metric]
        table[f"{metric} n"] = grouped[metric].count()
    table["params"] = grouped[schema.METRIC_TRAINABLE].mean()
    table["flops_per_token"] = grouped[schema.METRIC_FLOPS].mean()
    table["train_s"] = grouped[schema.METRIC_TRAIN_TIME].mean()
    table["params_dict"] = pd.Series(params)
    method_order = {m: i for i, m in enumerate(labels.METHOD_TITLES)}
    table["_order"] = table["method"].map(lambda m: method_order.get(str(m).lower(), len(method_order)))
    table["_cr"] = table["core_routing"].map(lambda v: 0 if v is not False else 1)
    table = table.sort_values(["_order", "rank", "experts", "_cr", "label"], na_position="first")
    return table.drop(columns=["_order", "_cr"])


def display_scale(frame: pd.DataFrame, columns: list[Column]) -> float:
    """Accuracies logged as fractions are shown in percent, as the paper does; values above 1 as they are."""
    metrics = [c.metric for c in columns]
    values = frame[metrics].to_numpy(dtype=float).ravel()
    values = values[~pd.isna(values)]
    return 100.0 if values.size and (values <= 1.0).all() else 1.0
