"""Math answer extraction and accuracy exactly as the paper's evaluation (LLM-Adapters' ``evaluate.py``).

Rules (../shared/spec/methods.md, "Evaluation protocols"):
- numeric datasets: remove every comma, find all numbers with the reference pattern ``-?\\d+\\.?\\d*``, take the
  LAST one; correct iff ``|prediction - answer| <= 0.001``. No number → no prediction → wrong.
- AQuA: the FIRST capital letter A–E anywhere in the stripped completion (the reference pattern ``A|B|C|D|E``);
  correct iff it equals the answer letter.

The reference pattern is kept on purpose, quirks included, so figures stay comparable with the paper:
``.5`` reads as 5, ``3-4`` ends with -4, ``1/2`` ends with 2, and AQuA takes the first capital A–E even
inside a word ("Each" → E). Headline figure: the unweighted mean of the six per-dataset accuracies.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from comol.errors import ConfigError
from orchestration.evaluation.math_datasets import BY_KEY, MATH_DATASETS

MATH_FILES: dict[str, str] = {key: dataset.file for key, dataset in BY_KEY.items()}
LETTER_DATASETS = frozenset(key for key, dataset in BY_KEY.items() if dataset.answer == "letter")
TOLERANCE = 0.001

_NUMBER = re.compile(r"-?\d+\.?\d*")
_LETTER = re.compile(r"A|B|C|D|E")


def check_dataset(name: str) -> str:
    """The canonical (lower-case) dataset key; ConfigError naming the allowed ones otherwise."""
    key = name.lower()
    if key not in BY_KEY:
        raise ConfigError("dataset", f"unknown math dataset {name!r}", allowed=MATH_DATASETS)
    return key


def extract_number(completion: str) -> float | None:
    """The last number in the completion after removing commas, or None when there is none."""
    found = _NUMBER.findall(completion.replace(",", ""))
    return float(found[-1]) if found else None


def extract_letter(completion: str) -> str | None:
    """The first capital A–E in the stripped completion (the reference rule), or None."""
    found = _LETTER.findall(completion.strip())
    return found[0] if found else None


def extract_answer(dataset: str, completion: str) -> float | str | None:
    return extract_letter(completion) if check_dataset(dataset) in LETTER_DATASETS else extract_number(completion)


def is_correct(dataset: str, completion: str, answer: str | float) -> bool:
    """Score one completion against the reference answer (a number as text, or a letter for AQuA)."""
    prediction = extract_answer(dataset, completion)
    if prediction is None:
        return False
    if isinstance(prediction, str):
        return prediction == str(answer).strip()
    label = float(str(answer).replace(",", ""))
    return math.isfinite(prediction) and abs(label - prediction) <= TOLERANCE


def accuracy(dataset: str, completions: Sequence[str], answers: Sequence[str | float]) -> tuple[float, int, int]:
    """(accuracy, correct, n) over parallel lists; n must be positive."""
    if len(completions) != len(answers):
        raise ValueError(f"{len(completions)} completions for {len(answers)} answers")
    if not completions:
        raise ValueError("no completions to score")
    correct = sum(is_correct(dataset, c, a) for c, a in zip(completions, answers, strict=True))
    return correct / len(completions), correct, len(completions)


def average(accuracies: Mapping[str, float]) -> float:
    """The headline figure: the unweighted mean over datasets (not over examples)."""
    if not accuracies:
        raise ValueError("no per-dataset accuracies to average")
    return sum(accuracies.values()) / len(accuracies)


def math_metrics(records: Iterable[Mapping[str, object]]) -> dict[str, float]:
    """``eval/<dataset>/accuracy`` per dataset present and ``eval/average`` over them, from scored records.

    Records need ``dataset`` and a boolean ``correct`` (as ``benchmarks.evaluate_math`` writes them), so
    shards gathered from several workers can be merged first and scored once.
    """
    totals: dict[str, list[int]] = {}
    for record in records:
        hits = totals.setdefault(str(record["dataset"]), [0, 0])
        hits[0] += bool(record["correct"])
        hits[1] += 1
    per_dataset = {name: hit / n for name, (hit, n) in sorted(totals.items())}
    metrics = {f"eval/{name}/accuracy": acc for name, acc in per_dataset.items()}
    metrics["eval/average"] = average(per_dataset)
    return metrics


def load_math_dataset(name: str, data_dir: str | Path) -> list[dict]:
    """The records of one test set from a directory in the LLM-Adapters layout (../shared/data/math)."""
    path = Path(data_dir) / MATH_FILES[check_dataset(name)]
    if not path.is_file():
        raise FileNotFoundError(f"math test set {name!r} not found at {path}")
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)
