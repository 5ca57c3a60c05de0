"""Alpaca-style records (instruction, input, output, answer) as a ``datasets.Dataset``.

Sources: the synthetic arithmetic generator, a local JSON/JSONL file (``../shared/data/math/...``,
CodeAlpaca), or a hub dataset id. Every record comes out with the same four string columns; records
without an ``answer`` (CodeAlpaca) get an empty one.
"""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset, load_dataset
from datasets.table import InMemoryTable

from comol.errors import ConfigError
from orchestration.data.arithmetic import ARITHMETIC, arithmetic_records

COLUMNS = ("instruction", "input", "output", "answer")


def _normalise(dataset: Dataset, source: str) -> Dataset:
    missing = [c for c in ("instruction", "output") if c not in dataset.column_names]
    if missing:
        raise ConfigError(
            "data.source", f"{source} has no {', '.join(missing)} column (found: {', '.join(dataset.column_names)})"
        )

    def fill(record: dict) -> dict:
        return {c: "" if record.get(c) is None else str(record.get(c)) for c in COLUMNS}

    extra = [c for c in dataset.column_names if c not in COLUMNS]
    return dataset.map(fill, remove_columns=extra, keep_in_memory=True, new_fingerprint=dataset._fingerprint + "n")


def load_records(source: str, size: int | None = None, seed: int = 0, hub_split: str = "train") -> Dataset:
    """The records of ``source``; ``size`` generates that many problems (arithmetic) or keeps the first N."""
    if source == ARITHMETIC:
        if size is None:
            raise ConfigError("data.size", "the arithmetic generator needs a size")
        # An explicit fingerprint: hashing the table would run dill's disassembler, whose output Ray Train
        # workers log line by line (print is redirected there), and the problems are fixed by (size, seed).
        table = InMemoryTable.from_pylist(arithmetic_records(size, seed))
        return Dataset(table, fingerprint=f"arithmetic-{size}-{seed}")
    path = Path(source)
    if path.exists():
        files = sorted(str(p) for p in path.glob("*.json*")) if path.is_dir() else [str(path)]
        dataset = load_dataset("json", data_files=files, split="train")
    else:
        dataset = load_dataset(source, split=hub_split)
    if size is not None:
        dataset = dataset.select(range(min(size, len(dataset))))
    return _normalise(dataset, source)
