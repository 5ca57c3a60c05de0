"""``comol score``: accuracy of completions that already exist, by the paper's extraction rules.

Interface (other tools depend on it):
``comol score --task math --dataset KEY --data FILE.json [--field output] [--json]``, KEY one of the math
benchmarks of ``orchestration.evaluation.math_datasets`` (``comol score --help`` lists them).

``FILE.json`` is a JSON list of records, each with ``answer`` and the completion field (default ``output``),
e.g. the test sets in ../shared/data/math or the generation records of an evaluation. Prints the accuracy;
``--json`` prints one object with ``task``, ``dataset``, ``field``, ``accuracy``, ``correct`` and ``n``.
"""

from __future__ import annotations

import argparse

NAME = "score"
HELP = "score existing completions (math: last number / first AQuA letter, as the paper's evaluation)"
TASKS = ("math",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from orchestration.evaluation.math_datasets import MATH_DATASETS as DATASETS

    parser.add_argument("--task", required=True, metavar="{" + ",".join(TASKS) + "}", help="benchmark family")
    parser.add_argument("--dataset", required=True, metavar="{" + ",".join(DATASETS) + "}", help="test set")
    parser.add_argument("--data", required=True, metavar="FILE.json", help="JSON list of records with `answer`")
    parser.add_argument("--field", default="output", help="record field holding the completion (default output)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def load_records(path: str, field: str) -> tuple[list[str], list[str]]:
    """(completions, answers) from a JSON list; ConfigError naming the record and field on bad input."""
    from comol.errors import ConfigError
    from comol.user_files import read_json

    records = read_json(path, "--data file")
    if not isinstance(records, list) or not records:
        raise ConfigError("--data", f"{path} must hold a non-empty JSON list of records")
    completions, answers = [], []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            raise ConfigError("--data", f"record {index} is a {type(record).__name__}, not an object")
        for name in (field, "answer"):
            if name not in record:
                flag = "--field" if name == field else "--data"
                raise ConfigError(flag, f"record {index} has no {name!r} field (keys: {', '.join(sorted(record))})")
        completion, answer = record[field], record["answer"]
        if not isinstance(completion, str):
            raise ConfigError("--field", f"record {index}: {field!r} must be a string, got {type(completion).__name__}")
        if not isinstance(answer, str | int | float) or isinstance(answer, bool):
            raise ConfigError("--data", f"record {index}: 'answer' must be a string or number")
        completions.append(completion)
        answers.append(str(answer))
    return completions, answers


def run(args: argparse.Namespace) -> int:
    import json

    from comol.errors import ConfigError
    from orchestration.evaluation.math_datasets import MATH_DATASETS
    from orchestration.evaluation.math_scoring import LETTER_DATASETS, accuracy, check_dataset

    if args.task not in TASKS:
        raise ConfigError("--task", f"unknown task {args.task!r}", allowed=TASKS)
    try:
        dataset = check_dataset(args.dataset)
    except ConfigError:
        raise ConfigError("--dataset", f"unknown dataset {args.dataset!r}", allowed=MATH_DATASETS) from None
    completions, answers = load_records(args.data, args.field)
    if dataset not in LETTER_DATASETS:
        for index, answer in enumerate(answers):
            try:
                float(answer.replace(",", ""))
            except ValueError:
                raise ConfigError("--data", f"record {index}: answer {answer!r} is not a number") from None
    acc, correct, n = accuracy(dataset, completions, answers)
    if args.json:
        result = {"task": args.task, "dataset": dataset, "field": args.field, "accuracy": acc}
        print(json.dumps({**result, "correct": correct, "n": n}))
    else:
        print(f"{dataset}: accuracy {acc:.4f} ({correct}/{n}, field {args.field!r})")
    return 0
