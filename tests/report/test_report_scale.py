"""The report at sweep scale (hundreds of configurations), without MLflow: the all-pairs family is computed in
one vectorised pass with the per-pair test's exact answers, and the params figure stays one series per method
family whatever else the sweep varies."""

from __future__ import annotations

import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import pytest

from orchestration.report.build import against, build_report
from orchestration.report.plots import MAX_POINT_LABELS, params_figure, pareto_front
from orchestration.report.significance import holm, welch_p, welch_p_pairs
from orchestration.tracking import schema
from orchestration.tracking.reader import SweepRecord, TrialRun


def lr_sweep(configs_per_method: int, seeds: int = 3) -> SweepRecord:
    """LoRA and CoMoL at one rank, swept over learning rates: the rows differ in ``lr`` only within a method."""
    rng = np.random.default_rng(3)
    trials = []
    for method, rank in (("lora", 8), ("comol", 4)):
        for i in range(configs_per_method):
            cid, lr = f"{method}{i:03d}", f"{1e-4 * 1.1**i:.6g}"
            level = rng.uniform(0.4, 0.7)
            for seed in range(seeds):
                params = {
                    schema.param("method"): method,
                    schema.param("adapter", "r"): str(rank),
                    schema.param("training", "lr"): lr,
                    "training.seed": str(seed),
                }
                metrics = {
                    schema.METRIC_AVERAGE: float(level + rng.normal(0, 0.02)),
                    schema.METRIC_TRAINABLE: 1000.0 * rank,
                    schema.METRIC_FLOPS: 10.0 * rank,
                    schema.METRIC_TRAIN_TIME: 5.0,
                }
                trials.append(TrialRun(f"{cid}-{seed}", cid, seed, method, "tiny", params, metrics, ""))
    return SweepRecord("lrs", "sqlite:///unused.db", "0", "parent", trials)


CASES = {
    "spread both sides": ([0.61, 0.64, 0.60], [0.66, 0.70, 0.65, 0.69]),
    "one side without spread": ([0.5, 0.5, 0.5], [0.52, 0.55, 0.51]),
    "neither side has spread": ([0.5, 0.5, 0.5], [0.6, 0.6, 0.6]),
    "one seed a side": ([0.5], [0.6, 0.61, 0.62]),
    "a NaN left out": ([0.5, math.nan, 0.52, 0.49], [0.6, 0.58, 0.61]),
    "no seeds": ([], [0.6, 0.58, 0.61]),
    "identical rows": ([0.5, 0.51, 0.52], [0.5, 0.51, 0.52]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_welch_p_pairs_gives_welch_p_for_every_pair_and_its_nan_where_there_is_no_test(case):
    a, b = CASES[case]
    got = welch_p_pairs([a, b], [(0, 1), (1, 0)])
    expected = welch_p(a, b)
    if math.isnan(expected):
        assert np.isnan(got).all()
    else:
        assert got == pytest.approx([expected, expected], rel=1e-12, abs=1e-15)


def test_the_all_pairs_family_of_a_large_table_equals_the_per_pair_tests():
    report = build_report(lr_sweep(30))  # 60 rows: 1770 pairs in the best row's family
    metric = report.headline.metric
    rows = list(report.table.index)
    pairs = list(itertools.combinations(rows, 2))
    raw = [welch_p(report.seed_values(i, metric), report.seed_values(j, metric)) for i, j in pairs]
    by_pair = dict(zip(map(frozenset, pairs), holm(raw), strict=True))
    adjusted, family = against(report, metric, report.best, rows)
    assert family == len(pairs)
    for cid, p in adjusted.items():
        assert p == pytest.approx(by_pair[frozenset((cid, report.best))], rel=1e-9)
    assert report.significance["vs best p_holm"].drop(report.best).tolist() == pytest.approx(
        [adjusted[c] for c in rows if c != report.best], rel=1e-12
    )


def test_the_params_figure_has_a_series_per_method_family_and_labels_only_the_front_of_a_large_sweep():
    report = build_report(lr_sweep(20))  # 40 configurations, their labels naming lr
    assert all("lr=" in label for label in report.table["label"])
    fig = params_figure(report)
    ax = fig.axes[0]
    legend = ax.get_legend_handles_labels()[1]
    assert sorted(legend) == ["CoMoL", "LoRA", "Pareto front (fewer params, higher accuracy)"]
    table = report.table
    front = pareto_front(table, "params", f"{report.headline.metric} mean")
    assert len(table) > MAX_POINT_LABELS and sorted(t.get_text() for t in ax.texts) == sorted(table.loc[front, "label"])

    small = params_figure(build_report(lr_sweep(3)))  # 6 configurations: every point labelled
    assert len(small.axes[0].texts) == 6
    plt.close(fig)
    plt.close(small)
