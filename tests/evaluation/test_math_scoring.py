"""Math answer extraction by the reference rules: numbers (commas, negatives, decimals, none) and AQuA letters."""

from __future__ import annotations

import pytest

from comol.errors import ConfigError
from orchestration.evaluation.math_scoring import (
    MATH_DATASETS,
    accuracy,
    average,
    extract_answer,
    is_correct,
    math_metrics,
)

# (dataset, completion, answer, extracted prediction, correct)
CASES = [
    ("gsm8k", "The answer is 1,234.", "1234", 1234.0, True),  # commas removed
    ("gsm8k", "It cost $1,234,567.50 in total.", "1234567.5", 1234567.5, True),
    ("svamp", "The temperature dropped to -5 degrees.", "-5", -5.0, True),  # negative
    ("svamp", "so x = -3.25", "-3.25", -3.25, True),
    ("addsub", "The answer is 0.6666666666666666 cm.", "0.6666666666666666", 0.6666666666666666, True),  # decimal
    ("addsub", "roughly 2.0004", "2", 2.0004, True),  # within 0.001
    ("addsub", "roughly 2.002", "2", 2.002, False),  # outside 0.001
    ("gsm8k", "The answer is 576.", "576.0", 576.0, True),  # "576." and "576.0" agree
    ("gsm8k", "First 3, then 5, finally 7", "7", 7.0, True),  # the LAST number
    ("gsm8k", "The answer is 7. Check: 7 - 2 = 5", "7", 5.0, False),  # last, not "the answer is"
    ("gsm8k", "It is between 3-4 hours", "4", -4.0, False),  # reference quirk: "-4"
    ("multiarith", "I do not know.", "3", None, False),  # no number
    ("singleeq", "", "0", None, False),  # empty completion
    ("aqua", "The answer is (C).", "C", "C", True),
    ("aqua", "  E", "E", "E", True),
    ("aqua", "Rationale: Bill's speed is 11 mph. The answer is (D).", "D", "B", False),  # FIRST capital A-E
    ("aqua", "(e) is right", "E", None, False),  # lower case does not count
    ("aqua", "", "A", None, False),
]


@pytest.mark.parametrize(("dataset", "completion", "answer", "prediction", "correct"), CASES)
def test_reference_extraction(dataset, completion, answer, prediction, correct):
    assert extract_answer(dataset, completion) == prediction
    assert is_correct(dataset, completion, answer) is correct


def test_dataset_names_and_unknown_dataset():
    assert MATH_DATASETS == ("addsub", "aqua", "gsm8k", "multiarith", "singleeq", "svamp")
    assert is_correct("GSM8K", "42", "42")  # case-insensitive keys
    with pytest.raises(ConfigError, match="dataset"):
        is_correct("mathqa", "1", "1")


def test_accuracy_and_unweighted_average():
    assert accuracy("gsm8k", ["1", "2", "x"], ["1", "3", "4"]) == (1 / 3, 1, 3)
    records = [{"dataset": "addsub", "correct": True}] + [
        {"dataset": "gsm8k", "correct": c} for c in (True, False, False)
    ]
    metrics = math_metrics(records)
    assert metrics["eval/addsub/accuracy"] == 1.0
    assert metrics["eval/gsm8k/accuracy"] == pytest.approx(1 / 3)
    # Mean over datasets, not over examples (which would be 2/4).
    assert metrics["eval/average"] == pytest.approx((1 + 1 / 3) / 2)
    assert average({name: 0.5 for name in MATH_DATASETS}) == 0.5
    with pytest.raises(ValueError):
        accuracy("gsm8k", [], [])
