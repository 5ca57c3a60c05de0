"""Completions in the prompt template the adapter was trained with (Alpaca unless recorded otherwise), for
``comol generate`` and the served MLflow Model alike.

Both go through the evaluation's batched generation, so they decode exactly as the benchmarks do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from orchestration.data.prompts import DEFAULT_TEMPLATE, build_prompt
from orchestration.evaluation.generation import GenerationConfig, generate


def complete_all(
    model: torch.nn.Module,
    tokenizer: Any,
    instructions: Sequence[str],
    config: GenerationConfig,
    template: str = DEFAULT_TEMPLATE,
) -> list[str]:
    """One completion per instruction (the first sample; prompt and specials stripped), in order."""
    prompts = [build_prompt(text, template=template) for text in instructions]
    return [samples[0] for samples in generate(model, tokenizer, prompts, config, progress=False)]


def complete(
    model: torch.nn.Module,
    tokenizer: Any,
    instruction: str,
    max_new_tokens: int = 128,
    template: str = DEFAULT_TEMPLATE,
) -> str:
    """Greedy decoding, as the paper evaluates; returns the completion only (prompt and specials stripped)."""
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, batch_size=1)
    return complete_all(model, tokenizer, [instruction], config, template)[0]
