"""Short GSM-style arithmetic word problems with answer-only targets, deterministic by seed.

A 135M model can visibly learn these on a CPU in minutes (the quickstart task): the question is one
sentence, the target is just the number ("7"), so the response loss falls quickly and accuracy is
scorable by the evaluation rules (last number in the completion, within 0.001 of ``answer``).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

ARITHMETIC = "arithmetic"  # the name of this generator as a data source and as an evaluation benchmark
NAMES = ("Tom", "Anna", "Maria", "Ben", "Lily", "Sam", "Nora", "Omar", "Julia", "Ravi")
ITEMS = ("apples", "pencils", "marbles", "cookies", "stickers", "books", "balloons", "cards", "shells", "coins")

Problem = tuple[str, int]


def _add(rng: random.Random) -> Problem:
    name, item, a, b = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(2, 30), rng.randint(2, 30)
    return f"{name} has {a} {item} and buys {b} more. How many {item} does {name} have now?", a + b


def _subtract(rng: random.Random) -> Problem:
    name, other = rng.sample(NAMES, 2)
    item, a = rng.choice(ITEMS), rng.randint(5, 40)
    b = rng.randint(1, a - 1)
    return f"{name} had {a} {item} and gave {b} to {other}. How many {item} does {name} have left?", a - b


def _multiply(rng: random.Random) -> Problem:
    name, item, a, b = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(2, 9), rng.randint(2, 9)
    return f"{name} buys {a} bags with {b} {item} in each bag. How many {item} does {name} buy?", a * b


def _divide(rng: random.Random) -> Problem:
    name, item, each, friends = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(2, 9), rng.randint(2, 6)
    return (
        f"{name} shares {each * friends} {item} equally among {friends} friends. How many {item} does each friend get?",
        each,
    )


def _two_step(rng: random.Random) -> Problem:
    name, item, a, b = rng.choice(NAMES), rng.choice(ITEMS), rng.randint(5, 30), rng.randint(2, 20)
    c = rng.randint(1, a + b - 1)
    return (
        f"A box has {a} {item}. {name} puts in {b} more and takes out {c}. How many {item} are in the box?",
        a + b - c,
    )


KINDS: tuple[Callable[[random.Random], Problem], ...] = (_add, _subtract, _multiply, _divide, _two_step)


def arithmetic_problem(rng: random.Random) -> dict[str, str]:
    """One Alpaca-style record: the question as instruction, the number as both output and answer."""
    question, answer = rng.choice(KINDS)(rng)
    return {"instruction": question, "input": "", "output": str(answer), "answer": str(answer)}


def arithmetic_records(size: int, seed: int, exclude: Iterable[str] = ()) -> list[dict[str, str]]:
    """``size`` distinct problems from ``seed`` (same seed, same list), skipping questions in ``exclude``."""
    rng = random.Random(seed)
    seen = set(exclude)
    records: list[dict[str, str]] = []
    attempts = 0
    while len(records) < size:
        attempts += 1
        if attempts > 50 * size + 1000:
            raise ValueError(f"could not generate {size} distinct problems (the template space is too small)")
        record = arithmetic_problem(rng)
        if record["instruction"] in seen:
            continue
        seen.add(record["instruction"])
        records.append(record)
    return records


def arithmetic_test_records(size: int, seed: int, train_size: int) -> list[dict[str, str]]:
    """Held-out problems: a different stream, excluding every question the training set of (train_size, seed) has."""
    train = {r["instruction"] for r in arithmetic_records(train_size, seed)}
    return arithmetic_records(size, seed + 7_919_003, exclude=train)
