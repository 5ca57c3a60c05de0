"""The report's statistics without MLflow: calibration of the interval at three seeds, closed forms of Welch's
interval, Holm and power, the degenerate cases, and the report tables built from in-memory sweep records."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower

from orchestration.report.build import build_report
from orchestration.report.render import csv_frame, latex, markdown, terminal_text
from orchestration.report.significance import (
    ALPHA,
    MAX_SEEDS,
    compare,
    detectable_difference,
    holm,
    power,
    seeds_to_detect,
    welch_p,
)
from orchestration.tracking import schema
from orchestration.tracking.reader import SweepRecord, TrialRun

SIMULATIONS = 3000  # null comparisons per distribution
# Allowed false-positive rate: the nominal 5% plus three Monte-Carlo standard errors.
BOUND = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / SIMULATIONS)


@pytest.mark.parametrize(
    "draw",
    [
        pytest.param(lambda rng, size: rng.normal(0.6, 0.02, size), id="normal"),
        pytest.param(lambda rng, size: rng.lognormal(0.0, 1.0, size), id="lognormal"),
    ],
)
def test_at_three_seeds_a_side_the_interval_holds_its_level_and_agrees_with_p(draw):
    rng = np.random.default_rng(12)
    excluded = rejected = 0
    for _ in range(SIMULATIONS):
        test = compare(draw(rng, 3), draw(rng, 3))  # no true difference
        outside = test.ci_low > 0 or test.ci_high < 0
        assert outside == (test.p < ALPHA), test  # the printed interval and p never disagree
        excluded += outside
        rejected += test.p < ALPHA
    assert excluded / SIMULATIONS <= BOUND
    assert rejected / SIMULATIONS <= BOUND


def test_the_interval_is_welchs_closed_form():
    a, b = [0.61, 0.64, 0.60], [0.66, 0.70, 0.65, 0.69]
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    se = math.sqrt(va / 3 + vb / 4)
    df = (va / 3 + vb / 4) ** 2 / ((va / 3) ** 2 / 2 + (vb / 4) ** 2 / 3)  # Welch–Satterthwaite by hand
    half = stats.t.ppf(0.975, df) * se
    diff = np.mean(a) - np.mean(b)
    test = compare(a, b)
    assert test.diff == pytest.approx(diff)
    assert test.df == pytest.approx(df)
    assert (test.ci_low, test.ci_high) == pytest.approx((diff - half, diff + half))
    assert test.p == pytest.approx(2 * stats.t.sf(abs(diff) / se, df))
    assert test.interval == "Welch t" and (test.n_a, test.n_b) == (3, 4)
    assert welch_p(a, b) == test.p


def test_holm_matches_an_independent_implementation_and_skips_untested():
    p = [0.01, 0.04, 0.03, 0.005, math.nan, 0.2]
    expected = multipletests([x for x in p if not math.isnan(x)], method="holm")[1]
    adjusted = holm(p)
    assert math.isnan(adjusted[4])
    assert np.delete(adjusted, 4) == pytest.approx(expected)
    # by hand: sorted 0.005, 0.01, 0.03, 0.04, 0.2 times 5, 4, 3, 2, 1, kept monotone
    assert np.delete(adjusted, 4) == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.2])
    assert holm([]).size == 0 and np.isnan(holm([math.nan])).all()


@pytest.mark.parametrize("n", [3, 5, 10])
def test_detectable_difference_and_seeds_match_the_equal_variance_power_tables(n):
    """With equal variances and seed counts Welch's df is the pooled 2n − 2, so statsmodels' two-sample
    t-test power (an independent implementation) must give the same answers."""
    sd = 0.02
    se = sd * math.sqrt(2 / n)
    effect = TTestIndPower().solve_power(effect_size=None, nobs1=n, alpha=0.05, power=0.8)
    assert detectable_difference(se, 2 * n - 2) == pytest.approx(effect * sd, rel=1e-6)
    assert power(effect * sd, se, 2 * n - 2) == pytest.approx(0.8, abs=1e-5)  # statsmodels solves to ~1e-6
    needed = TTestIndPower().solve_power(effect_size=0.5, nobs1=None, alpha=0.05, power=0.8)  # ≈ 63.8
    assert seeds_to_detect(0.5 * sd, sd**2, sd**2) == math.ceil(needed)


def test_comparison_reports_what_was_detectable():
    a, b = [0.60, 0.62, 0.61], [0.64, 0.63, 0.66]
    test = compare(a, b)
    se = math.sqrt(np.var(a, ddof=1) / 3 + np.var(b, ddof=1) / 3)
    assert power(test.detectable, se, test.df) == pytest.approx(0.8, abs=1e-8)
    n = test.seeds_needed
    assert n is not None and n >= 2
    var = np.var(a, ddof=1) + np.var(b, ddof=1)

    def achieved(k: int) -> float:
        df = (k - 1) * var**2 / (np.var(a, ddof=1) ** 2 + np.var(b, ddof=1) ** 2)
        return power(abs(test.diff), math.sqrt(var / k), df)

    assert achieved(n) >= 0.8 > achieved(n - 1)  # the smallest seed count that is enough
    assert test.note == ""


@pytest.mark.parametrize(
    ("a", "b", "diff", "note"),
    [
        ([0.6], [0.5, 0.55, 0.52], 0.6 - np.mean([0.5, 0.55, 0.52]), "fewer than two seeds (n = 1 vs 3)"),
        ([0.6, 0.6, 0.6], [0.5, 0.5, 0.5], 0.1, "every seed gave the same value on both sides"),
        ([0.6, math.nan], [0.5, 0.55], 0.6 - 0.525, "fewer than two seeds (n = 1 vs 2)"),
        ([], [0.5, 0.55], math.nan, "fewer than two seeds (n = 0 vs 2)"),
    ],
    ids=["one-seed", "no-spread", "nan-seed", "empty"],
)
def test_untestable_comparisons_say_why(a, b, diff, note):
    test = compare(a, b)
    assert test.diff == pytest.approx(diff, nan_ok=True)
    assert math.isnan(test.p) and math.isnan(test.ci_low) and math.isnan(test.detectable)
    assert test.seeds_needed is None and not test.significant and note in test.note


def test_no_observed_difference_and_too_many_seeds_are_said_in_words():
    same = compare([0.1, 0.2, 0.3], [0.3, 0.1, 0.2])
    assert same.diff == 0 and same.seeds_needed is None and same.note == "no difference observed"
    tiny = compare([0.1, 0.2, 0.3], [0.1, 0.2, 0.3001])
    assert tiny.seeds_needed is None and tiny.note == f"more than {MAX_SEEDS} seeds a side to detect it"
    assert math.isfinite(tiny.detectable)


# --- the report, from an in-memory sweep record --------------------------------------------------------
def record(rows: dict[str, tuple[str, int, list[float]]], sweep: str = "stats") -> SweepRecord:
    """One finished run per (row, seed): label parts (method, rank) and eval/average per seed."""
    trials = []
    for cid, (method, rank, values) in rows.items():
        for seed, value in enumerate(values):
            trials.append(
                TrialRun(
                    run_id=f"{cid}-{seed}",
                    config_id=cid,
                    seed=seed,
                    method=method,
                    base_model="tiny",
                    params={
                        schema.param("method"): method,
                        schema.param("adapter", "r"): str(rank),
                        "training.seed": str(seed),
                    },
                    metrics={
                        schema.METRIC_AVERAGE: value,
                        schema.METRIC_TRAINABLE: 1000.0 * rank,
                        schema.METRIC_FLOPS: 10.0 * rank,
                        schema.METRIC_TRAIN_TIME: 5.0,
                    },
                    artifact_uri="",
                )
            )
    return SweepRecord(sweep, "sqlite:///unused.db", "0", "parent", trials)


def test_report_prints_welchs_interval_agreeing_with_p_and_holm_over_all_pairs_for_the_best():
    # eight rows: "close" is below the best with raw p < 0.05, but the best was picked from these seeds
    rows = {
        "best": ("comol", 16, [0.700, 0.702, 0.704]),
        "close": ("comol", 8, [0.690, 0.692, 0.694]),
        "lora": ("lora", 16, [0.60, 0.65, 0.62]),
        **{f"m{i}": ("molora", 2**i, list(0.66 + 0.02 * np.array([0.1, 1.3, -0.9]) * i)) for i in range(1, 6)},
    }
    report = build_report(record(rows))
    sig = report.significance
    assert report.best == "best" and report.reference == "lora"
    for prefix in ("vs best", "vs reference"):
        tested = sig[sig[f"{prefix} p"].notna()]
        outside = (tested[f"{prefix} ci_low"] > 0) | (tested[f"{prefix} ci_high"] < 0)
        assert (outside == (tested[f"{prefix} p"] < ALPHA)).all()
    raw = welch_p(rows["close"][2], rows["best"][2])
    assert raw < ALPHA  # significant alone, and Holm over the 7 comparisons with the best would keep it
    others = [welch_p(v[2], rows["best"][2]) for k, v in rows.items() if k != "best"]
    assert holm(others)[list(rows).index("close") - 1] < ALPHA
    pairs = [(i, j) for n, i in enumerate(rows) for j in list(rows)[n + 1 :]]
    family = holm([welch_p(rows[i][2], rows[j][2]) for i, j in pairs])
    expected = family[pairs.index(("best", "close"))]
    assert sig.at["close", "vs best p_holm"] == pytest.approx(expected)  # all 28 pairs: the pick is paid for
    assert expected >= ALPHA and not sig.at["close", "vs best significant"]
    assert "dagger" not in report.marks[("close", schema.METRIC_AVERAGE)]
    assert sig.attrs["family"] == {"vs best": 28, "vs reference": 7}
    ref_family = holm([welch_p(rows[k][2], rows["lora"][2]) for k in rows if k != "lora"])
    assert sig.loc[[k for k in rows if k != "lora"], "vs reference p_holm"].to_numpy() == pytest.approx(ref_family)

    text = " ".join(terminal_text(report, width=250).split())  # captions wrap: compare words
    md = markdown(report)
    for rendered in (text, md):
        assert "picked post hoc" in rendered and "Holm over all 28 testable pairs of rows" in rendered
        assert "Welch's t-interval" in rendered and "95% CI (Welch t)" in rendered
        assert "bootstrap" not in rendered
        assert "named in advance" in rendered and "Holm over its 7 testable comparisons" in rendered
        assert "detectable Δ (80% power)" in rendered and "seeds a side for Δ" in rendered
    tex = latex(report)
    assert r"$\Delta$" in tex and "Δ" not in tex and "α" not in tex
    csv = csv_frame(report)
    close = csv.loc["close"]
    assert close["Average vs best p (Welch)"] == pytest.approx(raw)
    welch_df = compare(rows["close"][2], rows["best"][2]).df
    assert close["Average vs best df (Welch-Satterthwaite)"] == pytest.approx(welch_df)
    assert close["Average vs best p (Holm)"] == pytest.approx(expected)
    assert close["Average vs best 95% CI (Welch t) low"] < close["Average vs best diff"] < 0
    assert close["Average vs best detectable diff (80% power)"] > 0
    assert close["Average vs best seeds a side to detect diff (80% power)"] >= 2


def test_degenerate_rows_render_words_not_nan_or_inf():
    rows = {
        "a": ("comol", 16, [0.70, 0.72, 0.71]),
        "one": ("comol", 8, [0.69]),
        "flat": ("comol", 4, [0.5, 0.5, 0.5]),
        "lora": ("lora", 16, [0.5, 0.5, 0.5]),
    }
    report = build_report(record(rows))
    text = " ".join(terminal_text(report, width=250).split())
    md = markdown(report)
    for rendered in (text, md):
        assert "nan" not in rendered.lower() and "inf" not in rendered.lower()
        assert "fewer than two seeds (n = 1 vs 3)" in rendered
        assert "every seed gave the same value on both sides" in rendered  # flat vs lora
    sig = report.significance
    assert pd.isna(sig.at["one", "vs best p"]) and not sig.at["one", "vs best significant"]
    assert sig.at["flat", "vs reference note"].startswith("no test")


def test_reference_picked_as_the_best_of_several_rows_is_corrected_as_post_hoc():
    rows = {
        "c": ("comol", 16, [0.70, 0.72, 0.71]),
        "l8": ("lora", 8, [0.60, 0.66, 0.62]),
        "l16": ("lora", 16, [0.64, 0.67, 0.65]),
        "l4": ("lora", 4, [0.55, 0.61, 0.59]),
    }
    report = build_report(record(rows))
    assert report.reference == "l16" and sorted(report.reference_candidates) == ["l16", "l4", "l8"]
    pairs = [(i, j) for n, i in enumerate(rows) for j in list(rows)[n + 1 :] if {i, j} & {"l8", "l16", "l4"}]
    family = holm([welch_p(rows[i][2], rows[j][2]) for i, j in pairs])
    assert report.significance.at["c", "vs reference p_holm"] == pytest.approx(family[pairs.index(("c", "l16"))])
    assert "picked post hoc as the best of 3 lora rows" in markdown(report)
