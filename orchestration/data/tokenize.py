"""Records → token ids and labels, with the loss on the whole sequence or on the response only.

The prompt and the response are tokenized separately and concatenated, so the prompt/response
boundary is exact for masking: ``labels="response"`` sets every prompt position to -100 (ignored by
the loss), ``labels="all"`` (the authors' default) trains on every token. EOS ends the response, then
the sequence is cut to ``cutoff_len``. Examples left without any label token are dropped.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from datasets import Dataset

from orchestration.data.prompts import DEFAULT_TEMPLATE, build_prompt

IGNORE_INDEX = -100
Labels = Literal["all", "response"]


def encode(prompt_ids: list[int], response_ids: list[int], cutoff_len: int, labels: Labels) -> dict[str, list[int]]:
    """One example's ``input_ids`` and ``labels`` from already tokenized prompt and response (with EOS)."""
    input_ids = (prompt_ids + response_ids)[:cutoff_len]
    masked = [IGNORE_INDEX] * len(prompt_ids) + response_ids
    return {"input_ids": input_ids, "labels": list(input_ids) if labels == "all" else masked[:cutoff_len]}


def prompt_of(record: dict, template: str = DEFAULT_TEMPLATE) -> str:
    """A record's prompt (its ``instruction`` and optional ``input``) in ``template``."""
    return build_prompt(record["instruction"], record.get("input") or "", template)


def tokenize_records(
    records: Dataset, tokenizer, cutoff_len: int, labels: Labels = "all", template: str = DEFAULT_TEMPLATE
) -> Dataset:
    """Tokenized dataset with columns input_ids, labels, answer (kept for scoring)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token to end responses with")

    def batch(rows: dict[str, list]) -> dict[str, list]:
        records = [dict(zip(rows, values, strict=True)) for values in zip(*rows.values(), strict=True)]
        prompts = [prompt_of(record, template) for record in records]
        prompt_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
        response_ids = tokenizer(rows["output"], add_special_tokens=False)["input_ids"]
        out: dict[str, list] = {"input_ids": [], "labels": []}
        for p, r in zip(prompt_ids, response_ids, strict=True):
            example = encode(p, [*r, eos], cutoff_len, labels)
            out["input_ids"].append(example["input_ids"])
            out["labels"].append(example["labels"])
        return out

    drop = [c for c in records.column_names if c != "answer"]
    # In memory, with explicit fingerprints: concurrent Ray workers must not race on the shared HF cache,
    # and datasets must not hash these closures (dill's hashing prints bytecode inside Ray Train workers).
    key = f"{records._fingerprint}|{tokenizer.name_or_path}|{len(tokenizer)}|{cutoff_len}|{labels}|{template}"
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:32]
    tokenized = records.map(
        batch, batched=True, remove_columns=drop, keep_in_memory=True, new_fingerprint=fingerprint + "t"
    )
    return tokenized.filter(
        lambda row: any(t != IGNORE_INDEX for t in row["labels"][1:]),
        keep_in_memory=True,
        new_fingerprint=fingerprint + "f",
    )
