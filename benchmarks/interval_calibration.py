"""How often does a report call a difference real when there is none? The figures behind the report's choices.

Part 1: null comparisons (both sides drawn from one distribution) at n seeds a side. For each n and
distribution it prints the share of 95% intervals that exclude 0 for the percentile bootstrap (the former
interval, resampling each side's seeds) and for Welch's t-interval (``significance.compare``, which the
report prints), and whether the t-interval ever disagreed with p < 0.05.

Part 2: tables of k rows with no true difference, each row compared with the best row picked from the same
seeds. It prints the family-wise error (any row flagged below the best) for raw Welch p, Holm over the
k − 1 comparisons with the best, and Holm over every pair of rows (what ``build.py`` does).

    python benchmarks/interval_calibration.py                 # defaults: 2000 simulations each
    python benchmarks/interval_calibration.py --simulations 4000 --seed 1
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np

from orchestration.report.significance import ALPHA, compare, holm, welch_p

DISTRIBUTIONS = {
    "normal": lambda rng, size: rng.normal(0.0, 1.0, size),
    "lognormal": lambda rng, size: rng.lognormal(0.0, 1.0, size),
    "exponential": lambda rng, size: rng.exponential(1.0, size),
}


def percentile_bootstrap_excludes_zero(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, resamples: int):
    """The former interval, vectorised over simulations: resample each side's seeds, take the 2.5/97.5%
    quantiles of the mean difference. ``a``, ``b``: (simulations, n)."""
    sims, n_a = a.shape
    n_b = b.shape[1]
    mean_a = np.take_along_axis(a[:, None, :], rng.integers(0, n_a, (sims, resamples, n_a)), axis=2).mean(axis=2)
    mean_b = np.take_along_axis(b[:, None, :], rng.integers(0, n_b, (sims, resamples, n_b)), axis=2).mean(axis=2)
    low, high = np.quantile(mean_a - mean_b, [ALPHA / 2, 1 - ALPHA / 2], axis=1)
    return (low > 0) | (high < 0)


def null_comparisons(simulations: int, resamples: int, seeds: list[int], rng: np.random.Generator) -> None:
    print(f"Part 1: {simulations} null comparisons per cell; allowed {ALPHA:.0%} + 3 Monte-Carlo SE", flush=True)
    bound = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / simulations)
    print(f"{'distribution':<12} {'n':>4} {'bootstrap 95% excl. 0':>22} {'Welch t 95% excl. 0':>20} {'disagree':>9}")
    for name, draw in DISTRIBUTIONS.items():
        for n in seeds:
            a, b = draw(rng, (simulations, n)), draw(rng, (simulations, n))
            chunks = [
                percentile_bootstrap_excludes_zero(a[i : i + 250], b[i : i + 250], rng, resamples)
                for i in range(0, simulations, 250)
            ]
            boot = np.concatenate(chunks).mean()
            tests = [compare(x, y) for x, y in zip(a, b, strict=True)]
            welch = np.mean([t.ci_low > 0 or t.ci_high < 0 for t in tests])
            disagree = sum((t.ci_low > 0 or t.ci_high < 0) != (t.p < ALPHA) for t in tests)
            print(
                f"{name:<12} {n:>4} {boot:>21.1%}{'*' if boot > bound else ' '} {welch:>19.1%}"
                f"{'*' if welch > bound else ' '} {disagree:>9}",
                flush=True,
            )
    print(f"(* above {bound:.1%})\n")


def best_of_table(simulations: int, rows: int, n: int, rng: np.random.Generator) -> None:
    raw = fixed = all_pairs = 0
    pairs = list(itertools.combinations(range(rows), 2))
    for _ in range(simulations):
        x = rng.normal(0.0, 1.0, (rows, n))
        best = int(x.mean(axis=1).argmax())
        others = [i for i in range(rows) if i != best]
        p_best = np.array([welch_p(x[i], x[best]) for i in others])
        raw += bool((p_best < ALPHA).any())
        fixed += bool((holm(p_best) < ALPHA).any())
        family = holm([welch_p(x[i], x[j]) for i, j in pairs])
        all_pairs += any(family[q] < ALPHA for q, pair in enumerate(pairs) if best in pair)
    print(
        f"{rows:>4} {n:>4} {raw / simulations:>10.1%} {fixed / simulations:>21.1%} {all_pairs / simulations:>22.1%}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulations", type=int, default=2000)
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per interval")
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 10, 20, 50, 100], help="seeds a side")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    null_comparisons(args.simulations, args.resamples, args.seeds, rng)
    print(f"Part 2: {args.simulations} null tables; family-wise error of 'below the best (picked post hoc)'")
    print(f"{'rows':>4} {'n':>4} {'raw Welch':>10} {'Holm, k-1 vs best':>21} {'Holm, all pairs':>22}")
    for rows, n in ((3, 3), (8, 3), (8, 10)):
        best_of_table(args.simulations, rows, n, rng)
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
