"""The report's three figures (PNG): accuracy vs rank, vs experts (core routing on/off), vs trainable params.

Each figure stands alone: its title names the sweep and the metric, error bars are the sample std over
seeds, and the legend names every series. A sweep with no variation on a figure's axis gets no figure,
only a note saying why.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import FuncFormatter

from orchestration.report.build import Report
from orchestration.report.render import human

FILES = {"rank": "accuracy_vs_rank.png", "experts": "accuracy_vs_experts.png", "params": "accuracy_vs_params.png"}
MAX_POINT_LABELS = 12  # the params figure labels every point up to this many configurations, else its front only


def pareto_front(points: pd.DataFrame, x: str, y: str) -> list[str]:
    """Index labels of the rows no other row beats: none has ≤ ``x`` (cost) and ≥ ``y`` with one strict."""
    front = []
    for idx, row in points.iterrows():
        dominated = (
            (points[x] <= row[x]) & (points[y] >= row[y]) & ((points[x] < row[x]) | (points[y] > row[y]))
        ).any()
        if not dominated:
            front.append(idx)
    return sorted(front, key=lambda i: (points.at[i, x], points.at[i, y]))


def _ylabel(report: Report) -> str:
    title = report.headline.title
    name = "average accuracy" if title == "Average" else title
    return f"{name} (%)" if report.scale == 100 else name


def _series_name(label: str, drop: str) -> str:
    return re.sub(rf"\s*\b{drop}=\S+", "", label).strip()


def _errorbar_series(ax: plt.Axes, frame: pd.DataFrame, x: str, series: pd.Series, report: Report) -> None:
    metric = report.headline.metric
    for name, group in frame.groupby(series, sort=False):
        group = group.sort_values(x)
        ax.errorbar(
            group[x],
            group[f"{metric} mean"] * report.scale,
            yerr=(group[f"{metric} std"] * report.scale).fillna(0),
            marker="o",
            capsize=4,
            linewidth=1.5,
            label=name,
        )


def _reference_line(ax: plt.Axes, report: Report) -> None:
    if report.reference is None:
        return
    row = report.table.loc[report.reference]
    value = row[f"{report.headline.metric} mean"] * report.scale
    ax.axhline(value, color="grey", linestyle="--", linewidth=1, label=f"{row['label']} (reference)")


def _base_line(ax: plt.Axes, report: Report) -> None:
    """The untrained model's score: what every point is fine-tuned up from."""
    for row in report.base:
        value = row.values.get(report.headline.metric)
        if value is not None and not pd.isna(value):
            ax.axhline(value * report.scale, color="tab:red", linestyle="-.", linewidth=1, label=row.label)


def _log2_axis(ax: plt.Axes, values: pd.Series, xlabel: str, title: str, report: Report) -> None:
    """A base-2 log x axis ticked at the swept values (ranks and expert counts are powers of two)."""
    ticks = sorted(values.unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_ylabel(report))
    ax.set_title(f"{title}\n(mean ± sample std over seeds)")


def _finish(fig: plt.Figure, ax: plt.Axes, path: Path) -> Path:
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def plot_rank(report: Report, path: Path) -> Path | None:
    table = report.table.dropna(subset=["rank", f"{report.headline.metric} mean"])
    if table["rank"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    _errorbar_series(ax, table, "rank", table["label"].map(lambda s: _series_name(s, "r")), report)
    _base_line(ax, report)
    _log2_axis(ax, table["rank"], "LoRA rank r", f"{report.sweep}: {_ylabel(report)} vs rank", report)
    return _finish(fig, ax, path)


def plot_experts(report: Report, path: Path) -> Path | None:
    table = report.table.dropna(subset=["experts", f"{report.headline.metric} mean"])
    table = table[table["core_routing"].notna()]
    if table["experts"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))

    def series(row: pd.Series) -> str:
        routing = "core routing on (CR)" if row["core_routing"] else "core routing off (w/o CR)"
        rest = _series_name(_series_name(row["label"], "N"), "r").replace(" w/o CR", "")
        rank = f", r={row['rank']:g}" if table["rank"].nunique() > 1 else ""
        return f"{rest}: {routing}{rank}"

    _errorbar_series(ax, table, "experts", table.apply(series, axis=1), report)
    _reference_line(ax, report)
    _base_line(ax, report)
    title = f"{report.sweep}: {_ylabel(report)} vs experts, core routing on/off"
    _log2_axis(ax, table["experts"], "number of experts N", title, report)
    return _finish(fig, ax, path)


def method_family(label: str) -> str:
    """A row label without its settings (``CoMoL r=8 N=4 lr=0.001`` → ``CoMoL``; ``CoMoL w/o CR``, ``LoRA``): one
    series per family, however many axes the sweep varies."""
    return re.sub(r"\s*\b[\w.]+=\S+", "", label).strip()


def plot_params(report: Report, path: Path) -> Path | None:
    fig = params_figure(report)
    if fig is None:
        return None
    return _finish(fig, fig.axes[0], path)


def params_figure(report: Report) -> plt.Figure | None:
    """Accuracy against trainable parameters, a series per method family, the Pareto front dotted. Every point
    is labelled in a small table; a sweep of hundreds of configurations labels only its front (hundreds of
    overlapping labels are unreadable, and laying them out took minutes)."""
    metric = f"{report.headline.metric} mean"
    table = report.table.dropna(subset=["params", metric])
    if table["params"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    family = table["label"].map(method_family)
    for name, group in table.groupby(family, sort=False):
        ax.errorbar(
            group["params"],
            group[metric] * report.scale,
            yerr=(group[f"{report.headline.metric} std"] * report.scale).fillna(0),
            fmt="o",
            capsize=4,
            label=name,
        )
    front = pareto_front(table, "params", metric)
    labelled = table if len(table) <= MAX_POINT_LABELS else table.loc[front]
    for _, row in labelled.iterrows():
        ax.annotate(
            row["label"],
            (row["params"], row[metric] * report.scale),
            textcoords="offset points",
            xytext=(5, 5),
            fontsize=7,
        )
    ax.step(
        table.loc[front, "params"],
        table.loc[front, metric] * report.scale,
        where="post",
        color="black",
        linestyle=":",
        linewidth=1.2,
        label="Pareto front (fewer params, higher accuracy)",
    )
    _base_line(ax, report)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: human(v)))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: human(v)))
    ax.tick_params(axis="x", which="minor", labelsize=7)
    ax.set_xlabel("trainable adapter parameters (log scale)")
    ax.set_ylabel(_ylabel(report))
    ax.set_title(f"{report.sweep}: {_ylabel(report)} vs trainable parameters\n(mean ± sample std over seeds)")
    return fig


def make_plots(report: Report, directory: Path) -> tuple[list[Path], list[str]]:
    """Write the figures the sweep has variation for; return them and a note for each one skipped."""
    directory.mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    why = {"rank": "one rank only", "experts": "fewer than two expert counts (CoMoL)", "params": "one parameter count"}
    for key, plot in (("rank", plot_rank), ("experts", plot_experts), ("params", plot_params)):
        path = plot(report, directory / FILES[key])
        if path is None:
            skipped.append(f"plot {FILES[key]} skipped: the sweep has {why[key]}")
        else:
            written.append(path)
    return written, skipped
