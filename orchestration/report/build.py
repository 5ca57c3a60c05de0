"""Assemble a sweep's report: the aggregated table, best/second-best marks and significance tests."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from comol.errors import ConfigError
from orchestration.report.aggregate import Column, aggregate, display_scale, runs_frame
from orchestration.report.significance import ALPHA, Comparison, compare
from orchestration.tracking import schema
from orchestration.tracking.reader import SweepRecord

MIN_SEEDS = 3  # the paper's standard: fewer seeds and the std (and every test) is shaky
DEFAULT_REFERENCE = "lora"


@dataclass
class Report:
    sweep: str
    parent_run_id: str
    runs: pd.DataFrame  # one row per run
    table: pd.DataFrame  # one row per configuration, in the paper's row order
    columns: list[Column]
    headline: Column  # the column "best" and the significance table are about
    scale: float  # 100 when accuracies are fractions shown in percent
    best: str  # config_id with the highest headline seed mean
    reference: str | None  # config_id of the reference row, if the sweep has one
    reference_name: str
    marks: dict[tuple[str, str], set[str]]  # (config_id, metric) → {"best", "second", "dagger"}
    significance: pd.DataFrame  # per configuration: headline vs best and vs reference
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def seed_values(self, config_id: str, metric: str) -> np.ndarray:
        rows = self.runs[self.runs["config_id"] == config_id].sort_values("seed")
        return rows[metric].dropna().to_numpy(dtype=float)


def _column_marks(table: pd.DataFrame, metric: str) -> dict[str, str]:
    """Best and second-best distinct seed means of a column (higher is better for every metric shown)."""
    means = table[f"{metric} mean"].dropna()
    distinct = sorted(set(means.tolist()), reverse=True)
    out = {}
    for cid, value in means.items():
        if value == distinct[0]:
            out[cid] = "best"
        elif len(distinct) > 1 and value == distinct[1]:
            out[cid] = "second"
    return out


def pick_reference(table: pd.DataFrame, headline: str, wanted: str | None) -> tuple[str | None, str, str | None]:
    """The reference row: a config_id, a row label, or a method name (then its best configuration).

    Returns (config_id or None, the name asked for, a note). Asking explicitly for a reference the
    sweep lacks is an error; the default (LoRA) may simply be absent from an ablation sweep.
    """
    name = wanted or DEFAULT_REFERENCE
    if name in table.index:
        return name, name, None
    by_label = table.index[table["label"].str.lower() == name.lower()]
    if len(by_label):
        return by_label[0], name, None
    of_method = table[table["method"].str.lower() == name.lower()]
    if len(of_method):
        best = of_method[f"{headline} mean"].idxmax()
        note = None
        if len(of_method) > 1:
            note = f"reference {name!r} matches {len(of_method)} rows; using its best, {table.at[best, 'label']}"
        return best, name, note
    if wanted:
        choices = sorted(set(table["method"]) | set(table["label"]))
        raise ConfigError("reference", f"no configuration {wanted!r} in this sweep", allowed=choices)
    return None, name, f"no {name!r} configuration in this sweep: comparisons against a reference are left out"


def build_report(record: SweepRecord, reference: str | None = None) -> Report:
    """Aggregate a sweep's runs and test every configuration against the best and the reference."""
    runs, columns = runs_frame(record)
    if not columns:
        metrics = sorted(set().union(*(t.metrics for t in record.trials)))
        raise ConfigError(
            "metrics",
            f"sweep {record.sweep!r} has no eval/<benchmark>/accuracy, eval/average or pass@k metric "
            f"in its finished runs (metrics there: {', '.join(metrics) or 'none'})",
        )
    table = aggregate(runs, columns)
    headline = next((c for c in columns if c.metric == schema.METRIC_AVERAGE), columns[0])
    if table[f"{headline.metric} mean"].isna().all():
        raise ConfigError("metrics", f"no finished run of sweep {record.sweep!r} has {headline.metric}")
    best = table[f"{headline.metric} mean"].idxmax()
    ref_id, ref_name, ref_note = pick_reference(table, headline.metric, reference)
    report = Report(
        sweep=record.sweep,
        parent_run_id=record.parent_run_id,
        runs=runs,
        table=table,
        columns=columns,
        headline=headline,
        scale=display_scale(runs, columns),
        best=best,
        reference=ref_id,
        reference_name=ref_name,
        marks={},
        significance=pd.DataFrame(),
        notes=list(record.notes) + ([ref_note] if ref_note else []),
    )
    for column in columns:
        marks = _column_marks(table, column.metric)
        column_best = [cid for cid, m in marks.items() if m == "best"]
        for cid in table.index:
            flags = {marks[cid]} if cid in marks else set()
            if column_best and cid not in column_best:
                test = compare(
                    report.seed_values(cid, column.metric), report.seed_values(column_best[0], column.metric)
                )
                if test.significant:
                    flags.add("dagger")
            report.marks[(cid, column.metric)] = flags
    report.significance = _significance_table(report)
    few = table[table["seeds"] < MIN_SEEDS]
    if len(few):
        listed = ", ".join(f"{row.label} (n={row.seeds})" for row in few.itertuples())
        report.warnings.append(
            f"fewer than {MIN_SEEDS} seeds for {listed}: their standard deviations and significance tests "
            "are unreliable (the paper's standard is three seeds per configuration)"
        )
    if any(c.computed for c in columns):
        report.notes.append("the runs log no eval/average: Average is the unweighted mean of the accuracies per run")
    return report


def _row(prefix: str, test: Comparison | None) -> dict[str, float | bool]:
    if test is None:
        return {
            f"{prefix} diff": math.nan,
            f"{prefix} p": math.nan,
            f"{prefix} ci_low": math.nan,
            f"{prefix} ci_high": math.nan,
            f"{prefix} significant": False,
        }
    return {
        f"{prefix} diff": test.diff,
        f"{prefix} p": test.p,
        f"{prefix} ci_low": test.ci_low,
        f"{prefix} ci_high": test.ci_high,
        f"{prefix} significant": test.significant,
    }


def _significance_table(report: Report) -> pd.DataFrame:
    """Headline metric of each configuration against the best and the reference (raw metric units)."""
    metric = report.headline.metric
    rows = {}
    best_values = report.seed_values(report.best, metric)
    ref_values = report.seed_values(report.reference, metric) if report.reference else None
    for cid in report.table.index:
        values = report.seed_values(cid, metric)
        vs_best = compare(values, best_values) if cid != report.best and len(values) else None
        vs_ref = compare(values, ref_values) if ref_values is not None and cid != report.reference else None
        rows[cid] = {
            "label": report.table.at[cid, "label"],
            "seeds": int(report.table.at[cid, "seeds"]),
            "mean": report.table.at[cid, f"{metric} mean"],
            "std": report.table.at[cid, f"{metric} std"],
            **_row("vs best", vs_best),
            **_row("vs reference", vs_ref),
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.attrs["alpha"] = ALPHA
    return frame
