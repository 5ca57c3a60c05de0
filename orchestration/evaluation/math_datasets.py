"""The paper's math benchmarks, one row each: everything that varies by benchmark lives here.

Scoring (which answer rule), loading (which file), the ``comol score`` CLI and the report's columns (title,
order) read this table, so a new math benchmark is one row (and its test file under ``../shared/data/math``).
No torch and no comol imports: ``comol --help`` lists the keys without loading a model stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class MathDataset:
    key: str  # CLI and metric names: eval/<key>/accuracy
    title: str  # the paper's column title
    file: str  # the test set in the LLM-Adapters layout
    answer: Literal["number", "letter"]  # the last number (within 0.001), or the first capital A–E (AQuA)


# In the paper's column order.
MATH_BENCHMARKS: tuple[MathDataset, ...] = (
    MathDataset("addsub", "AddSub", "AddSub.test.json", "number"),
    MathDataset("aqua", "AQuA", "AQuA.test.json", "letter"),
    MathDataset("gsm8k", "GSM8K", "gsm8k.test.json", "number"),
    MathDataset("multiarith", "MultiArith", "MultiArith.test.json", "number"),
    MathDataset("singleeq", "SingleEq", "SingleEq.test.json", "number"),
    MathDataset("svamp", "SVAMP", "SVAMP.test.json", "number"),
)
BY_KEY = {dataset.key: dataset for dataset in MATH_BENCHMARKS}
MATH_DATASETS: tuple[str, ...] = tuple(BY_KEY)
