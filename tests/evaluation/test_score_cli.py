"""``comol score`` on the real test sets, checked against a hand reading of a few records."""

from __future__ import annotations

import json

import pytest

from orchestration.cli import main
from orchestration.evaluation.math_scoring import MATH_FILES

# Read by hand from ../shared/data/math: the last number (AddSub) / first capital A-E (AQuA) of `output`.
HAND_ADDSUB = {  # record index: (last number in output, answer)
    0: (4, "4"),
    1: (9.8, "9.8"),
    2: (8, "8"),
    3: (52, "52"),
    4: (0.6666666666666666, "0.6666666666666666"),
    5: (5, "5"),
    6: (104, "104"),
    7: (51, "60"),  # wrong: 60 books minus 9 read
    8: (63, "63"),
    9: (16, "16"),
}
HAND_AQUA = {  # record index: first capital A-E, answer
    0: ("D", "A"),
    1: ("C", "C"),
    2: ("C", "D"),
    3: ("C", "C"),
    4: ("A", "A"),
    5: ("B", "D"),  # "Bill's average speed ..." comes before "(D)": the reference rule takes B
    6: ("C", "B"),
    7: ("D", "D"),
}


def _score(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["score", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("dataset", "hand"), [("addsub", HAND_ADDSUB), ("aqua", HAND_AQUA)])
def test_score_matches_hand_reading(shared_data, tmp_path, capsys, dataset, hand):
    records = json.loads((shared_data / "math" / MATH_FILES[dataset]).read_text())
    subset = [records[i] for i in hand]
    assert [r["answer"] for r in subset] == [answer for _, answer in hand.values()]
    expected = sum(
        (abs(pred - float(answer)) <= 1e-3) if isinstance(pred, float | int) else pred == answer
        for pred, answer in hand.values()
    )
    path = tmp_path / "subset.json"
    path.write_text(json.dumps(subset))
    code, out, _ = _score(capsys, "--task", "math", "--dataset", dataset, "--data", str(path), "--json")
    assert code == 0
    result = json.loads(out)
    assert (result["correct"], result["n"]) == (expected, len(hand))
    assert result["accuracy"] == pytest.approx(expected / len(hand))


def test_score_full_test_sets_json_shape(shared_data, capsys):
    sizes = {"addsub": 395, "aqua": 254, "gsm8k": 1319, "multiarith": 600, "singleeq": 508, "svamp": 1000}
    for dataset, size in sizes.items():
        path = shared_data / "math" / MATH_FILES[dataset]
        code, out, _ = _score(capsys, "--task", "math", "--dataset", dataset, "--data", str(path), "--json")
        assert code == 0
        result = json.loads(out)
        assert {"accuracy", "correct", "n"} <= set(result)
        assert result["n"] == size and isinstance(result["correct"], int)
        assert result["accuracy"] == pytest.approx(result["correct"] / size)
        assert 0.2 < result["accuracy"] < 1.0  # old completions: mostly but not all right
    code, out, _ = _score(capsys, "--task", "math", "--dataset", "addsub", "--data", str(path))
    assert code == 0 and "accuracy" in out


def test_score_custom_field(tmp_path, capsys):
    path = tmp_path / "gen.json"
    path.write_text(json.dumps([{"answer": "3", "completion": "so 3"}, {"answer": "-2", "completion": "-1"}]))
    code, out, _ = _score(capsys, "--task", "math", "--dataset", "svamp", "--data", str(path), "--field", "completion")
    assert code == 0 and "(1/2" in out


@pytest.mark.parametrize(
    ("content", "argv", "needle"),
    [
        (None, ["--dataset", "addsub"], "no such file"),
        ("[{", ["--dataset", "addsub"], "not valid JSON"),
        ('{"answer": "1"}', ["--dataset", "addsub"], "non-empty JSON list"),
        ("[]", ["--dataset", "addsub"], "non-empty JSON list"),
        ('[{"answer": "1", "text": "1"}]', ["--dataset", "addsub"], "--field: record 0 has no 'output' field"),
        ('[{"output": "1"}]', ["--dataset", "addsub"], "record 0 has no 'answer' field"),
        ('[{"answer": "1", "output": 5}]', ["--dataset", "addsub"], "must be a string"),
        ('[{"answer": "x", "output": "1"}]', ["--dataset", "addsub"], "is not a number"),
        ('[{"answer": "1", "output": "1"}]', ["--dataset", "mathqa"], "--dataset: unknown dataset 'mathqa'"),
    ],
)
def test_score_bad_input_exits_2_naming_the_field(tmp_path, capsys, content, argv, needle):
    path = tmp_path / "data.json"
    if content is not None:
        path.write_text(content)
    code, out, err = _score(capsys, "--task", "math", *argv, "--data", str(path))
    assert code == 2 and out == ""
    assert needle in err


def test_score_unknown_task(tmp_path, capsys):
    path = tmp_path / "data.json"
    path.write_text('[{"answer": "1", "output": "1"}]')
    code, _, err = _score(capsys, "--task", "code", "--dataset", "addsub", "--data", str(path))
    assert code == 2 and "--task" in err
