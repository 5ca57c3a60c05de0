"""Assemble a sweep's report: the aggregated table, best/second-best marks and significance tests.

The best row is picked from the same seeds it is then compared with, so "below the best" is not one test
but a search over the table: under no true difference, Holm over only the k − 1 comparisons with the
picked best still flags a row in about 10% of 8-row tables at 10 seeds a side (simulated; Welch's test is
exact there). The family that covers any post-hoc pick is every pair of rows: Holm over all of them keeps
the family-wise error under 5% whichever row turns out best. A reference named in advance (LoRA) is one
fixed row: Holm over its k − 1 comparisons; picked as the best of several rows, it gets the same
all-candidates family as the best.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from comol.errors import ConfigError
from orchestration.report.aggregate import Column, aggregate, display_scale, runs_frame
from orchestration.report.significance import ALPHA, Comparison, compare, holm, welch_p_pairs
from orchestration.tracking import labels, schema
from orchestration.tracking.reader import BaseRun, SweepRecord, logged_metric_name

MIN_SEEDS = 3  # the paper's standard: fewer seeds and the std (and every test) is shaky
DEFAULT_REFERENCE = "lora"


@dataclass(frozen=True)
class BaseRow:
    """The untrained model's scores in the table's columns (raw metric units): the reference row, outside the
    marks and the tests (one deterministic evaluation, no seeds)."""

    label: str
    values: dict[str, float]  # column metric → value (NaN where it logged none)
    run_id: str


def base_rows(base: list[BaseRun], columns: list[Column]) -> list[BaseRow]:
    rows = []
    for run, label in zip(base, labels.base_labels([run.params for run in base]), strict=True):
        values = {}
        for column in columns:
            if column.computed:  # the unweighted mean of the accuracies, as for the trained rows
                accuracies = [values[c.metric] for c in columns if not c.computed and c.metric.endswith("/accuracy")]
                values[column.metric] = float(np.mean(accuracies)) if accuracies else math.nan
            else:
                values[column.metric] = run.metrics.get(logged_metric_name(column.metric, set(run.metrics)), math.nan)
        rows.append(BaseRow(label, values, run.run_id))
    return rows


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
    reference_candidates: list[str]  # rows the reference was picked from (one when named in advance)
    marks: dict[tuple[str, str], set[str]]  # (config_id, metric) → {"best", "second", "dagger"}
    significance: pd.DataFrame  # per configuration: headline vs best and vs reference, Holm-adjusted
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    base: list[BaseRow] = field(default_factory=list)  # the untrained model: the reference row (line in plots)

    _seeds: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)  # metric → config_id → values

    def seed_values(self, config_id: str, metric: str) -> np.ndarray:
        """The configuration's seed values of ``metric`` (by seed, NaN left out). Grouped once per metric: a
        table of k rows asks k² times."""
        if metric not in self._seeds:
            ordered = self.runs.sort_values(["config_id", "seed"])
            self._seeds[metric] = {
                cid: group[metric].dropna().to_numpy(dtype=float) for cid, group in ordered.groupby("config_id")
            }
        return self._seeds[metric].get(config_id, np.empty(0))


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


@dataclass(frozen=True)
class Reference:
    config_id: str | None
    name: str  # what was asked for (or the default)
    note: str | None
    candidates: tuple[str, ...] = ()  # the rows it was picked from: several when picked by its mean


def pick_reference(table: pd.DataFrame, headline: str, wanted: str | None) -> Reference:
    """The reference row: a config_id, a row label, or a method name (then its best configuration).

    Asking explicitly for a reference the sweep lacks is an error; the default (LoRA) may simply be
    absent from an ablation sweep.
    """
    name = wanted or DEFAULT_REFERENCE
    if name in table.index:
        return Reference(name, name, None, (name,))
    by_label = table.index[table["label"].str.lower() == name.lower()]
    if len(by_label):
        return Reference(by_label[0], name, None, (by_label[0],))
    of_method = table[table["method"].str.lower() == name.lower()]
    if len(of_method):
        best = of_method[f"{headline} mean"].idxmax()
        note = None
        if len(of_method) > 1:
            note = (
                f"reference {name!r} matches {len(of_method)} rows; using its best, {table.at[best, 'label']} "
                "(picked by its mean: its comparisons are corrected as post hoc)"
            )
        return Reference(best, name, note, tuple(of_method.index))
    if wanted:
        choices = sorted(set(table["method"]) | set(table["label"]))
        raise ConfigError("reference", f"no configuration {wanted!r} in this sweep", allowed=choices)
    return Reference(
        None, name, f"no {name!r} configuration in this sweep: comparisons against a reference are left out"
    )


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
    ref = pick_reference(table, headline.metric, reference)
    report = Report(
        sweep=record.sweep,
        parent_run_id=record.parent_run_id,
        runs=runs,
        table=table,
        columns=columns,
        headline=headline,
        scale=display_scale(runs, columns),
        best=best,
        reference=ref.config_id,
        reference_name=ref.name,
        reference_candidates=list(ref.candidates),
        marks={},
        significance=pd.DataFrame(),
        notes=list(record.notes) + ([ref.note] if ref.note else []),
        base=base_rows(record.base, columns),
    )
    for column in columns:
        marks = _column_marks(table, column.metric)
        column_best = [cid for cid, m in marks.items() if m == "best"]
        # the column's best was picked from these seeds: Holm over every pair of rows
        adjusted = against(report, column.metric, column_best[0], table.index)[0] if column_best else {}
        for cid in table.index:
            flags = {marks[cid]} if cid in marks else set()
            if cid not in column_best and adjusted.get(cid, math.nan) < ALPHA:
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


def against(report: Report, metric: str, target: str, candidates: Iterable[str]) -> tuple[dict[str, float], int]:
    """Holm-adjusted p of each row against ``target``, which was picked from ``candidates`` by its mean, and
    the family's size (its testable comparisons). The family is every pair (row, candidate), so the pick
    itself is paid for; one candidate (a reference named in advance) leaves the k − 1 comparisons with it."""
    candidates = set(candidates)
    pairs = [(i, j) for i, j in itertools.combinations(report.table.index, 2) if i in candidates or j in candidates]
    if len(candidates) == 1:
        pairs = [(i, j) for i, j in pairs if target in (i, j)]
    rows = list(report.table.index)
    position = {cid: n for n, cid in enumerate(rows)}
    samples = [report.seed_values(cid, metric) for cid in rows]
    raw = welch_p_pairs(samples, [(position[i], position[j]) for i, j in pairs])
    adjusted = {frozenset(pair): float(p) for pair, p in zip(pairs, holm(raw), strict=True)}
    by_row = {cid: adjusted[frozenset((cid, target))] for cid in report.table.index if cid != target}
    return by_row, sum(not math.isnan(p) for p in raw)


COMPARISON_FIELDS = (
    "diff",
    "ci_low",
    "ci_high",
    "df",
    "p",
    "p_holm",
    "significant",
    "detectable",
    "seeds_needed",
    "note",
)


def _row(prefix: str, test: Comparison | None, p_holm: float) -> dict[str, object]:
    if test is None:
        values: dict[str, object] = dict.fromkeys(COMPARISON_FIELDS, math.nan)
        values.update(significant=False, seeds_needed=None, note="")
    else:
        values = {
            "diff": test.diff,
            "ci_low": test.ci_low,
            "ci_high": test.ci_high,
            "df": test.df,
            "p": test.p,
            "p_holm": p_holm,
            "significant": bool(p_holm < ALPHA),
            "detectable": test.detectable,
            "seeds_needed": test.seeds_needed,
            "note": test.note,
        }
    return {f"{prefix} {key}": value for key, value in values.items()}


def _significance_table(report: Report) -> pd.DataFrame:
    """Headline metric of each configuration against the best and the reference (raw metric units).

    ``p`` is Welch's and matches the printed interval; ``p_holm`` is adjusted over the comparison's family
    (see the module docstring) and decides ``significant``."""
    metric = report.headline.metric
    best_values = report.seed_values(report.best, metric)
    vs_best, best_family = against(report, metric, report.best, report.table.index)
    vs_ref: dict[str, float] = {}
    ref_family = 0
    if report.reference:
        vs_ref, ref_family = against(report, metric, report.reference, report.reference_candidates)
        ref_values = report.seed_values(report.reference, metric)
    rows = {}
    for cid in report.table.index:
        values = report.seed_values(cid, metric)
        best_test = compare(values, best_values) if cid != report.best and len(values) else None
        ref_test = compare(values, ref_values) if report.reference and cid != report.reference else None
        rows[cid] = {
            "label": report.table.at[cid, "label"],
            "seeds": int(report.table.at[cid, "seeds"]),
            "mean": report.table.at[cid, f"{metric} mean"],
            "std": report.table.at[cid, f"{metric} std"],
            **_row("vs best", best_test, vs_best.get(cid, math.nan)),
            **_row("vs reference", ref_test, vs_ref.get(cid, math.nan)),
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.attrs.update(alpha=ALPHA, family={"vs best": best_family, "vs reference": ref_family})
    return frame
