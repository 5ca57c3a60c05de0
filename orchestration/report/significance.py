"""Is a gap between two configurations real, and could this sweep have seen one? Welch's t over seeds.

Sweeps run few seeds (three, the paper's standard), so the interval must hold its level at n = 3. The
printed interval is Welch's t-interval of the mean difference (Welch–Satterthwaite degrees of freedom): it
is the inversion of Welch's test, so it excludes 0 exactly when p < ALPHA. No bootstrap: in simulation
(``benchmarks/interval_calibration.py``) a percentile bootstrap 95% interval excluded 0 in about 19% of null
comparisons at 3 seeds a side, 12-13% at 5 and still about 6% at 50 and 100 (normal, lognormal and exponential
seeds), while Welch's stayed at or under 5% (within Monte-Carlo error) at every n: no seed count a sweep runs
makes the bootstrap the better interval.

Each comparison also says what the sweep could have detected: the smallest difference Welch's test finds
with POWER at the observed spread and seed counts (noncentral t), and how many seeds a side would detect
the observed difference. Both use a spread estimated from a few seeds, so they are planning figures.

A table compares many rows, some against a best row picked from the same data: :func:`holm` adjusts a
family of p-values; the report decides the family (see ``build.py``).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

ALPHA = 0.05
CONFIDENCE = 1 - ALPHA
POWER = 0.8
MAX_SEEDS = 1000  # seeds a side beyond which "how many would detect it" is reported as "more than this"
INTERVAL = "Welch t"  # the interval every comparison prints (named in the report's captions and CSV)


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b``: mean difference a − b, Welch's test and its interval, from the seeds' sufficient
    statistics; what was detectable is derived from them on first use (it costs noncentral-t evaluations).

    A missing figure is NaN (``seeds_needed``: None) and ``note`` says why in words.
    """

    diff: float
    t: float
    df: float  # Welch–Satterthwaite degrees of freedom
    p: float
    ci_low: float  # CONFIDENCE Welch t-interval of diff; excludes 0 iff p < ALPHA
    ci_high: float
    n_a: int
    n_b: int
    var_a: float  # sample variances (ddof = 1) of the seeds
    var_b: float
    untested: str = ""  # why there is no test (too few seeds, no spread); empty when there is one
    interval: str = INTERVAL

    @property
    def significant(self) -> bool:
        """Unadjusted p < ALPHA; a table of many comparisons judges by its Holm-adjusted p instead."""
        return not math.isnan(self.p) and self.p < ALPHA

    @functools.cached_property
    def detectable(self) -> float:
        """The smallest |difference| Welch's test finds with POWER at this spread and these seed counts."""
        if self.untested:
            return math.nan
        return detectable_difference(math.sqrt(self.var_a / self.n_a + self.var_b / self.n_b), self.df)

    @functools.cached_property
    def seeds_needed(self) -> int | None:
        """Seeds a side (both sides equal) for Welch's test to find |diff| with POWER at this spread."""
        return None if self.untested else seeds_to_detect(self.diff, self.var_a, self.var_b)

    @property
    def note(self) -> str:
        if self.untested or self.seeds_needed is not None:
            return self.untested
        return "no difference observed" if self.diff == 0 else f"more than {MAX_SEEDS} seeds a side to detect it"


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def power(delta: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """Two-sided power of a t-test with ``df`` degrees of freedom at true difference ``delta`` and standard
    error ``se``: the noncentral t with noncentrality delta / se beyond the critical value either way.

    The lower tail is taken as the upper tail at −delta/se: scipy's ``nct.cdf`` far in a tail can be NaN."""
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = delta / se
    return float(stats.nct.sf(crit, df, nc) + stats.nct.sf(crit, df, -nc))


def detectable_difference(se: float, df: float, target: float = POWER, alpha: float = ALPHA) -> float:
    """The smallest difference a two-sided test at ``alpha`` detects with probability ``target``."""
    if not (se > 0 and df > 0 and math.isfinite(se) and math.isfinite(df)):
        return math.nan
    high = (stats.t.ppf(1 - alpha / 2, df) + 4) * se
    while power(high, se, df, alpha) < target:  # heavy tails at df ≈ 1 need a wider bracket
        high *= 2
    return float(optimize.brentq(lambda d: power(d, se, df, alpha) - target, 0.0, high, xtol=se * 1e-9))


def welch_df(var_a: float, n_a: int | np.ndarray, var_b: float, n_b: int | np.ndarray) -> float | np.ndarray:
    """Welch–Satterthwaite degrees of freedom of the difference of two means."""
    qa, qb = var_a / n_a, var_b / n_b
    return (qa + qb) ** 2 / (qa**2 / (n_a - 1) + qb**2 / (n_b - 1))


def seeds_to_detect(
    diff: float, var_a: float, var_b: float, target: float = POWER, alpha: float = ALPHA, max_seeds: int = MAX_SEEDS
) -> int | None:
    """Seeds a side (the same on both) for Welch's test to find ``diff`` with probability ``target``, if the
    seed-to-seed variances are ``var_a`` and ``var_b``; None when more than ``max_seeds`` (or undefined)."""
    if diff == 0 or not (var_a + var_b > 0) or not math.isfinite(diff):
        return None

    def enough(n: int) -> bool:
        se = math.sqrt((var_a + var_b) / n)
        return power(abs(diff), se, float(welch_df(var_a, n, var_b, n)), alpha) >= target

    if not enough(max_seeds):
        return None
    low, high = 1, max_seeds  # power grows with n: bisect for the first n that is enough
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error under any dependence). NaN means no test was
    possible: it stays NaN and is not counted in the family."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    tested = np.flatnonzero(~np.isnan(p))
    m = tested.size
    if m == 0:
        return out
    order = tested[np.argsort(p[tested], kind="stable")]
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(stepped)
    return out


def _welch(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray, Any, str]:
    """The seeds' finite values, Welch's test result (None when no test is possible) and why not."""
    a, b = _finite(a), _finite(b)
    if a.size < 2 or b.size < 2:
        return a, b, None, f"no test: a side has fewer than two seeds (n = {a.size} vs {b.size})"
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return a, b, None, "no test: every seed gave the same value on both sides (no spread)"
    with warnings.catch_warnings():  # one side's seeds all equal is legitimate (a small eval set), not a loss
        warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
        return a, b, stats.ttest_ind(a, b, equal_var=False), ""


def welch_p(a: Sequence[float], b: Sequence[float]) -> float:
    """Welch's two-sided p-value alone (NaN when untestable): what a family of many comparisons needs."""
    result = _welch(a, b)[2]
    return math.nan if result is None else float(result.pvalue)


def welch_p_pairs(samples: Sequence[Sequence[float]], pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """:func:`welch_p` of ``(samples[i], samples[j])`` for every pair, at once.

    A table's family is every pair of its rows (k² / 2 tests): one scipy call per pair costs a millisecond, so
    200 rows took minutes. Here each row's sufficient statistics are computed once and the pairs' Welch t and
    p in one vectorised pass, with ``welch_p``'s rules (NaN when a side has fewer than two finite seeds or
    neither side has any spread)."""
    rows = [_finite(s) for s in samples]
    count = np.array([r.size for r in rows], dtype=float)
    mean = np.array([r.mean() if r.size else np.nan for r in rows])
    var = np.array([r.var(ddof=1) if r.size > 1 else np.nan for r in rows])
    flat = np.array([r.size > 0 and np.ptp(r) == 0 for r in rows])
    index = np.asarray(pairs, dtype=int).reshape(-1, 2)
    i, j = index[:, 0], index[:, 1]
    testable = (count[i] >= 2) & (count[j] >= 2) & ~(flat[i] & flat[j])
    p = np.full(len(index), np.nan)
    if not testable.any():
        return p
    i, j = i[testable], j[testable]
    qa, qb = var[i] / count[i], var[j] / count[j]
    t = (mean[i] - mean[j]) / np.sqrt(qa + qb)
    df = welch_df(var[i], count[i], var[j], count[j])
    p[testable] = np.minimum(1.0, 2 * stats.t.sf(np.abs(t), df))
    return p


def compare(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Welch's test of mean(a) − mean(b) and its t-interval (the interval the report prints). Non-finite
    values (a run that logged NaN) are left out."""
    a, b, result, untested = _welch(a, b)
    n_a, n_b = int(a.size), int(b.size)
    diff = float(a.mean() - b.mean()) if n_a and n_b else math.nan
    var_a = float(a.var(ddof=1)) if n_a > 1 else math.nan
    var_b = float(b.var(ddof=1)) if n_b > 1 else math.nan
    if result is None:
        nan = math.nan
        return Comparison(diff, nan, nan, nan, nan, nan, n_a, n_b, var_a, var_b, untested)
    interval = result.confidence_interval(CONFIDENCE)
    return Comparison(
        diff=diff,
        t=float(result.statistic),
        df=float(result.df),
        p=float(result.pvalue),
        ci_low=float(interval.low),
        ci_high=float(interval.high),
        n_a=n_a,
        n_b=n_b,
        var_a=var_a,
        var_b=var_b,
    )
