"""Runs → one row per configuration: mean and sample std over seeds for every benchmark.

Seeds are replicates of one configuration (same ``config_id``), so the spread we report is the sample
standard deviation (ddof=1), the unbiased estimate a reader can plug into a t-test.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

import pandas as pd

from orchestration.report.runs import SweepRecord
from orchestration.tracking import schema

# The paper's column order for its math benchmarks; other benchmarks follow alphabetically.
BENCHMARK_TITLES = {
    "addsub": "AddSub",
    "aqua": "AQuA",
    "gsm8k": "GSM8K",
    "multiarith": "MultiArith",
    "singleeq": "SingleEq",
    "svamp": "SVAMP",
}
METHOD_TITLES = {
    "lora": "LoRA",
    "molora": "MoLoRA",
    "hydralora": "HydraLoRA",
    "mola": "MoLA",
    "adamole": "AdaMoLE",
    "smear": "SMEAR",
    "flylora": "FlyLoRA",
    "comol": "CoMoL",
}
_ACCURACY = re.compile(r"^eval/(?P<name>[^/]+)/accuracy$")
# The sweep writer spells ``pass@k`` as ``pass_at_k`` (MLflow 3 refuses '@' in metric names); read both.
_PASS_AT = re.compile(r"^eval/humaneval/pass(?:@|_at_)(?P<k>\d+)$")
# Params that differ between seeds of one configuration by construction: never part of a label.
_PER_RUN_PARAM = re.compile(r"seed|dir|path|run_name|output", re.IGNORECASE)


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


def parse_bool(value: str | None) -> bool | None:
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in {"true", "1", "yes", "on"}:
        return True
    if text in {"false", "0", "no", "off"}:
        return False
    return None


def parse_number(value: str | None) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt_param(value: str) -> str:
    number = parse_number(value)
    if number is not None and number.is_integer() and abs(number) < 1e6:
        return str(int(number))
    return f"{number:g}" if number is not None else value


def base_label(method: str, params: dict[str, str]) -> str:
    """ "CoMoL r=16 N=8", "CoMoL w/o CR r=16 N=8", "LoRA r=16": the paper's row names."""
    name = METHOD_TITLES.get(method.lower(), method)
    if parse_bool(params.get(schema.PARAM_CORE_ROUTING)) is False:
        name += " w/o CR"
    parts = [name]
    if schema.PARAM_RANK in params:
        parts.append(f"r={_fmt_param(params[schema.PARAM_RANK])}")
    if schema.PARAM_EXPERTS in params and method.lower() != "lora":
        parts.append(f"N={_fmt_param(params[schema.PARAM_EXPERTS])}")
    return " ".join(parts)


def axis_defaults(method: str) -> dict[str, str]:
    """The method's defaults for the axes a label shows: a YAML that leaves ``adapter.r`` unset trained r=16."""
    from comol.methods import METHODS

    if method.lower() not in METHODS:
        return {}
    fields = {f.name: f for f in dataclasses.fields(METHODS[method.lower()].config_cls)}
    out = {}
    for param in (schema.PARAM_RANK, schema.PARAM_EXPERTS, schema.PARAM_CORE_ROUTING):
        field = fields.get(param.removeprefix("adapter."))
        if field is not None and field.default is not dataclasses.MISSING:
            out[param] = str(field.default)
    return out


def config_params(frame: pd.DataFrame) -> dict[str, dict[str, str]]:
    """Per configuration, the params all its seeds share (per-run ones like the seed dropped), with the
    method's defaults for the labelled axes the runs did not log."""
    out: dict[str, dict[str, str]] = {}
    for cid, group in frame.groupby("config_id", sort=False):
        shared = dict(group["params"].iloc[0])
        for params in group["params"].iloc[1:]:
            shared = {k: v for k, v in shared.items() if params.get(k) == v}
        shared = {k: v for k, v in shared.items() if not _PER_RUN_PARAM.search(k)}
        out[cid] = {**axis_defaults(str(group["method"].iloc[0])), **shared}
    return out


def unique_labels(methods: dict[str, str], params: dict[str, dict[str, str]]) -> dict[str, str]:
    """Row labels from the method and its axes; configurations that would share one get the params that
    tell them apart (``lr=0.0002``), and the config_id only as a last resort."""
    labels = {cid: base_label(methods[cid], params[cid]) for cid in methods}
    by_label: dict[str, list[str]] = {}
    for cid, label in labels.items():
        by_label.setdefault(label, []).append(cid)
    for cids in by_label.values():
        if len(cids) < 2:
            continue
        keys = sorted(set().union(*(params[c] for c in cids)))
        differing = [k for k in keys if len({params[c].get(k) for c in cids}) > 1]
        for cid in cids:
            extra = [f"{k.rsplit('.', 1)[-1]}={_fmt_param(params[cid].get(k, '-'))}" for k in differing]
            labels[cid] = " ".join([labels[cid], *extra])
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {cid: f"{label} [{cid[:6]}]" if counts[label] > 1 else label for cid, label in labels.items()}


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
    return parse_number(params.get(name))


def aggregate(frame: pd.DataFrame, columns: list[Column]) -> pd.DataFrame:
    """One row per configuration (index ``config_id``): label, axes, seeds, ``<metric> mean/std`` (ddof=1),
    trainable params, adapter FLOPs/token and mean training time."""
    metrics = [c.metric for c in columns]
    grouped = frame.groupby("config_id", sort=False)
    means = grouped[metrics].mean()
    stds = grouped[metrics].std(ddof=1)  # sample standard deviation over seeds
    table = pd.DataFrame(index=means.index)
    params = config_params(frame)
    methods = grouped["method"].first().to_dict()
    table["label"] = pd.Series(unique_labels(methods, params))
    table["method"] = pd.Series(methods)
    table["rank"] = pd.Series({c: _axis(p, schema.PARAM_RANK) for c, p in params.items()}, dtype=float)
    experts = {c: _axis(p, schema.PARAM_EXPERTS) if methods[c] != "lora" else None for c, p in params.items()}
    table["experts"] = pd.Series(experts, dtype=float)
    table["core_routing"] = pd.Series({c: parse_bool(p.get(schema.PARAM_CORE_ROUTING)) for c, p in params.items()})
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
    method_order = {m: i for i, m in enumerate(METHOD_TITLES)}
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
