"""Is a gap between two configurations real? Welch's t-test and a bootstrap interval over seeds.

Seeds are few (three), so both tools are stated with their limits: Welch's test does not assume equal
variances, and the bootstrap interval of the mean difference resamples each configuration's seeds
independently (percentile method, fixed generator seed so a report is reproducible).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95
N_RESAMPLES = 9999
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b``: mean difference a − b, Welch's p-value and a bootstrap interval of it."""

    diff: float
    t: float
    p: float
    ci_low: float
    ci_high: float

    @property
    def significant(self) -> bool:
        return not math.isnan(self.p) and self.p < ALPHA


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's t statistic and two-sided p-value; NaN when a side has fewer than two seeds or no spread."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return math.nan, math.nan
    result = stats.ttest_ind(a, b, equal_var=False)
    return float(result.statistic), float(result.pvalue)


def bootstrap_diff(a: Sequence[float], b: Sequence[float], seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(a) − mean(b), resampling the seeds of each side independently."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2:
        return math.nan, math.nan
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # every resample gives the same difference
        diff = float(a.mean() - b.mean())
        return diff, diff

    def mean_diff(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    result = stats.bootstrap(
        (a, b),
        mean_diff,
        vectorized=True,
        paired=False,
        n_resamples=N_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def compare(a: Sequence[float], b: Sequence[float]) -> Comparison:
    t, p = welch(a, b)
    low, high = bootstrap_diff(a, b)
    return Comparison(float(np.mean(a) - np.mean(b)), t, p, low, high)
