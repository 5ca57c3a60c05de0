"""Short two-step arithmetic word problems whose targets show the working, deterministic by seed.

The quickstart task. Untrained, SmolLM2-135M answers such a problem in one step (it copies a number, or does
one of the two operations: "Ben buys 6 bags of 5 shells and gives 6 to Lily. How many shells are left?" →
"6 - 6 = 1") and scores about 1 %; a few hundred examples teach it the procedure: write each step as an
equation, the result last ("6*5=30, 30-6=24"). Every step stays where the model computes fairly reliably
(the times table, two-digit plus one-digit, subtraction without borrowing), so what the fine-tune has to teach
is the format and the procedure, which it can in minutes. Scoring is the numeric rule of GSM8K: the last
number in the completion, compared with ``answer``.

Held-out problems are never seen in training, near-duplicates included. A problem's *signature* is its kind
and its numbers (names and items aside: "Tom buys 3 bags of 4 pens ..." and "Anna buys 3 bags of 4 cards ..."
are the same problem), and a stable hash puts every signature either in the training pool or in the held-out
pool. So the arithmetic of a held-out problem appears in no training set, whatever its size or seed, and both
pools follow the same distribution. No answer equals a number of its question, so copying a number from the
question scores nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

ARITHMETIC = "arithmetic"  # the name of this generator as a data source and as an evaluation benchmark
NAMES = ("Tom", "Anna", "Maria", "Ben", "Lily", "Sam", "Nora", "Omar", "Julia", "Ravi")
ITEMS = ("apples", "pencils", "marbles", "cookies", "stickers", "books", "balloons", "cards", "shells", "coins")
HELD_OUT_FRACTION = 0.3  # of every kind's signatures
HELD_OUT_SEED_OFFSET = 7_919_003  # the held-out sample's stream differs from any training stream of the same seed
DIGIT = range(2, 10)

Signature = tuple[int, ...]


@dataclass(frozen=True)
class Kind:
    """One kind of problem: the numbers it takes and how they become a question, its working and its answer."""

    name: str
    ranges: tuple[range, ...]
    answer: Callable[..., int]
    keep: Callable[..., bool]  # which combinations of numbers are problems of this kind
    question: str  # a format string of the numbers a, b, c and name, other, item
    work: Callable[..., str]

    def signatures(self) -> list[Signature]:
        """Every kept combination whose answer is not one of its own numbers."""
        combos = itertools.product(*self.ranges)
        return [c for c in combos if self.keep(*c) and self.answer(*c) not in c]


def _apply(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b}[op]


def _steps(a: int, op1: str, b: int, op2: str, c: int) -> str:
    """The working: both steps as equations without spaces ("6*5=30, 30-6=24": fewer tokens to train and decode)."""
    first = _apply(a, op1, b)
    return f"{a}{op1}{b}={first}, {first}{op2}{c}={_apply(first, op2, c)}"


KINDS: tuple[Kind, ...] = (
    Kind(
        "multiply_add",
        (DIGIT, DIGIT, DIGIT),
        lambda a, b, c: a * b + c,
        lambda a, b, c: True,
        "{name} buys {a} bags of {b} {item} and {c} loose {item}. How many {item} in all?",
        lambda a, b, c: _steps(a, "*", b, "+", c),
    ),
    Kind(
        "multiply_subtract",
        (DIGIT, DIGIT, range(1, 10)),
        lambda a, b, c: a * b - c,
        lambda a, b, c: a * b >= 10 and c <= a * b % 10,  # no borrowing
        "{name} buys {a} bags of {b} {item} and gives {c} to {other}. How many {item} are left?",
        lambda a, b, c: _steps(a, "*", b, "-", c),
    ),
    Kind(
        "add_multiply",
        (DIGIT, DIGIT, DIGIT),
        lambda a, b, c: (a + b) * c,
        lambda a, b, c: a + b <= 10,  # the product stays in the times table
        "{name} has {a} bags and buys {b} more. Each bag holds {c} {item}. How many {item} in all?",
        lambda a, b, c: _steps(a, "+", b, "*", c),
    ),
    Kind(
        "add_subtract",
        (range(10, 41), DIGIT, DIGIT),
        lambda a, b, c: a + b - c,
        lambda a, b, c: c <= (a + b) % 10,  # no borrowing
        "A box has {a} {item}. {name} adds {b} and takes out {c}. How many {item} are left?",
        lambda a, b, c: _steps(a, "+", b, "-", c),
    ),
)


def is_held_out(kind: str, signature: Signature) -> bool:
    """Whether a problem belongs to the held-out pool: a stable hash (the same on every machine and Python)."""
    digest = hashlib.sha256(repr((kind, signature)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < HELD_OUT_FRACTION


@cache
def pools(held_out: bool) -> dict[str, tuple[Signature, ...]]:
    """Every kind's training (or held-out) signatures."""
    return {k.name: tuple(s for s in k.signatures() if is_held_out(k.name, s) == held_out) for k in KINDS}


def max_held_out() -> int:
    """The most held-out problems :func:`arithmetic_test_records` can draw (as many of every kind)."""
    return len(KINDS) * min(len(p) for p in pools(held_out=True).values())


def _record(kind: Kind, signature: Signature, rng: random.Random) -> dict[str, str]:
    """An Alpaca-style record: the question as instruction, the working as output (with a leading space, so it
    reads as text after the prompt), the final number as answer."""
    name, other = rng.sample(NAMES, 2)
    a, b, c = signature
    question = kind.question.format(a=a, b=b, c=c, name=name, other=other, item=rng.choice(ITEMS))
    return {
        "instruction": question,
        "input": "",
        "output": f" {kind.work(*signature)}",
        "answer": str(kind.answer(*signature)),
    }


def arithmetic_records(size: int, seed: int) -> list[dict[str, str]]:
    """``size`` distinct training problems from ``seed`` (same seed, same list): a kind uniformly at random, then
    a signature of its training pool with random names and item."""
    rng = random.Random(seed)
    train = pools(held_out=False)
    records: list[dict[str, str]] = []
    seen: set[str] = set()
    for _ in range(50 * size + 1000):
        if len(records) == size:
            return records
        kind = rng.choice(KINDS)
        record = _record(kind, rng.choice(train[kind.name]), rng)
        if record["instruction"] not in seen:
            seen.add(record["instruction"])
            records.append(record)
    raise ValueError(f"could not generate {size} distinct problems (the template space is too small)")


def arithmetic_test_records(size: int, seed: int, train_size: int) -> list[dict[str, str]]:
    """``size`` held-out problems, as many of every kind, each of a different signature of the held-out pool, in
    random order. None shares a signature with the training set of ``(train_size, seed)`` (nor with any other
    training set): the pools guarantee it, and it is checked here."""
    if not 0 < size <= max_held_out():
        raise ValueError(f"held-out size must be between 1 and {max_held_out()}, got {size}")
    rng = random.Random(seed + HELD_OUT_SEED_OFFSET)
    held_out = pools(held_out=True)
    per_kind = [size // len(KINDS) + (i < size % len(KINDS)) for i in range(len(KINDS))]
    records = [
        _record(kind, signature, rng)
        for kind, count in zip(KINDS, per_kind, strict=True)
        for signature in rng.sample(held_out[kind.name], count)
    ]
    rng.shuffle(records)
    trained = {r["output"] for r in arithmetic_records(train_size, seed)}  # the working identifies the signature
    if any(r["output"] in trained for r in records):
        raise RuntimeError("a held-out problem shares its numbers with a training problem")
    return records
