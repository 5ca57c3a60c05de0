"""Records → token ids, labels and the prompt's length, with the loss on the whole sequence or the response only.

The prompt and the response are tokenized separately and concatenated, so the prompt/response boundary is
exact (``prompt_length``, which prompt-routed adapters such as SMEAR read through the batch's ``prompt_mask``)
and the prompt's tokens are exactly those generation feeds the model. ``labels="response"`` sets every prompt
position to -100 (ignored by the loss), ``labels="all"`` (the authors' default) trains on every token.
As in the authors' ``train.py``, prompt + response is cut to ``cutoff_len`` tokens and EOS is appended AFTER
the cut, so a long example still ends with EOS (it then has ``cutoff_len + 1`` tokens). In response mode an
example whose response was cut away entirely is dropped: its only label would be that EOS.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from datasets import Dataset

from orchestration.data.prompts import DEFAULT_TEMPLATE, build_prompt

IGNORE_INDEX = -100
Labels = Literal["all", "response"]


def encode(
    prompt_ids: list[int], response_ids: list[int], eos_id: int, cutoff_len: int, labels: Labels
) -> dict[str, list[int]]:
    """One example's ``input_ids``, ``labels`` and ``prompt_length`` from its tokenized prompt and response
    (without EOS): cut to ``cutoff_len``, then EOS appended."""
    input_ids = [*(prompt_ids + response_ids)[:cutoff_len], eos_id]
    prompt_length = min(len(prompt_ids), cutoff_len)
    if labels == "all":
        targets = list(input_ids)
    elif len(prompt_ids) >= cutoff_len and response_ids:
        targets = [IGNORE_INDEX] * len(input_ids)  # nothing of the response is left: dropped by the caller
    else:
        targets = [IGNORE_INDEX] * prompt_length + input_ids[prompt_length:]
    return {"input_ids": input_ids, "labels": targets, "prompt_length": prompt_length}


def prompt_of(record: dict, template: str = DEFAULT_TEMPLATE) -> str:
    """A record's prompt (its ``instruction`` and optional ``input``) in ``template``."""
    return build_prompt(record["instruction"], record.get("input") or "", template)


def tokenize_records(
    records: Dataset, tokenizer, cutoff_len: int, labels: Labels = "all", template: str = DEFAULT_TEMPLATE
) -> Dataset:
    """Tokenized dataset with columns input_ids, labels, prompt_length and answer (kept for scoring)."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token to end responses with")

    def batch(rows: dict[str, list]) -> dict[str, list]:
        records = [dict(zip(rows, values, strict=True)) for values in zip(*rows.values(), strict=True)]
        prompts = [prompt_of(record, template) for record in records]
        prompt_ids = tokenizer(prompts, add_special_tokens=True)["input_ids"]
        response_ids = tokenizer(rows["output"], add_special_tokens=False)["input_ids"]
        out: dict[str, list] = {"input_ids": [], "labels": [], "prompt_length": []}
        for p, r in zip(prompt_ids, response_ids, strict=True):
            for column, value in encode(p, r, eos, cutoff_len, labels).items():
                out[column].append(value)
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
