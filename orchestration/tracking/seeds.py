"""How one configuration's seeds are summarised, everywhere a seed mean is shown or acted on (the sweep's
summary, the report, promotion).

Seeds are replicates of one configuration, so the spread is the sample standard deviation (ddof=1), the
unbiased estimate a reader can plug into a t-test. One seed says nothing about spread: its std is NaN, shown
as such, never as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np


def seed_mean_std(values: Iterable[float]) -> tuple[float, float]:
    """(mean, sample std) of the finite values; NaN for a mean of none and a std of fewer than two."""
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    mean = float(finite.mean()) if finite.size else math.nan
    std = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    return mean, std


def seed_mean(values: Iterable[float]) -> float:
    return seed_mean_std(values)[0]


def seed_std(values: Iterable[float]) -> float:
    return seed_mean_std(values)[1]


def format_mean_std(mean: float, std: float, digits: int = 4) -> str:
    """``0.5123 ± 0.0100``; a single seed's spread reads ``± n/a``."""
    if math.isnan(mean):
        return "n/a"
    spread = "n/a" if math.isnan(std) else f"{std:.{digits}f}"
    return f"{mean:.{digits}f} ± {spread}"
