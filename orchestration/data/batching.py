"""Deterministic validation split, per-rank sharding and padding.

Which examples a worker sees is a pure function of (seed, step, rank, world size): epoch ``e`` is a
seeded permutation, optimizer step ``s`` takes the next ``batch_size`` indices of it, and rank ``r``
takes micro-batch slices ``(a·W + r)`` of those. So a run resumed at step ``s`` continues exactly, and
a 1-worker and a 2-worker run with the same global batch see the same examples per optimizer step.
"""

from __future__ import annotations

import torch
from datasets import Dataset

from orchestration.data.tokenize import IGNORE_INDEX


def split_train_val(dataset: Dataset, val_size: float, seed: int) -> tuple[Dataset, Dataset | None]:
    """A seeded split; ``val_size`` is a count (>= 1) or a fraction in (0, 1); 0 means no validation."""
    if val_size <= 0:
        return dataset, None
    count = int(val_size) if val_size >= 1 else max(1, round(val_size * len(dataset)))
    if count >= len(dataset):
        raise ValueError(f"validation size {count} leaves no training data (dataset has {len(dataset)} examples)")
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    return dataset.select(sorted(order[count:])), dataset.select(sorted(order[:count]))


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Full global batches per epoch (the incomplete last batch is dropped)."""
    return num_examples // batch_size


def epoch_order(num_examples: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_examples, generator=generator).tolist()


def step_micro_batches(
    num_examples: int,
    step: int,
    *,
    batch_size: int,
    accumulation: int,
    rank: int,
    world_size: int,
    seed: int,
) -> list[list[int]]:
    """This rank's micro-batches (example indices) for optimizer step ``step`` (1-based)."""
    per_epoch = steps_per_epoch(num_examples, batch_size)
    if per_epoch < 1:
        raise ValueError(f"{num_examples} training examples do not fill one batch of {batch_size}")
    epoch, within = divmod(step - 1, per_epoch)
    order = epoch_order(num_examples, seed, epoch)
    batch = order[within * batch_size : (within + 1) * batch_size]
    micro = batch_size // (accumulation * world_size)
    return [batch[(a * world_size + rank) * micro : (a * world_size + rank + 1) * micro] for a in range(accumulation)]


def eval_shard(num_examples: int, rank: int, world_size: int, micro_batch: int) -> list[list[int]]:
    """This rank's validation micro-batches; every rank gets the same count (FSDP needs lockstep forwards).

    Padding entries are -1: the collator turns them into examples with no label tokens.
    """
    per_rank = -(-num_examples // world_size)
    mine = list(range(rank, num_examples, world_size))
    mine += [-1] * (per_rank - len(mine))
    return [mine[i : i + micro_batch] for i in range(0, per_rank, micro_batch)]


def collate(dataset: Dataset, indices: list[int], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``labels`` (-100 on padding) for ``indices``, and a
    ``prompt_mask`` (1 on each example's prompt tokens) when the rows carry ``prompt_length``: adapters that
    route on the prompt (SMEAR) read it; the training step passes it only to models that take it.

    Index -1 stands for a padding example (a copy of example 0 whose labels are all ignored).
    """
    rows = [dataset[i if i >= 0 else 0] for i in indices]
    length = max(len(r["input_ids"]) for r in rows)
    input_ids = torch.full((len(rows), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    prompt = torch.zeros((len(rows), length), dtype=torch.long) if "prompt_length" in rows[0] else None
    for row, (index, record) in enumerate(zip(indices, rows, strict=True)):
        n = len(record["input_ids"])
        input_ids[row, :n] = torch.tensor(record["input_ids"])
        attention[row, :n] = 1
        if prompt is not None:
            prompt[row, : record["prompt_length"]] = 1
        if index >= 0:
            labels[row, :n] = torch.tensor(record["labels"])
    batch = {"input_ids": input_ids, "attention_mask": attention, "labels": labels}
    return batch if prompt is None else {**batch, "prompt_mask": prompt}
