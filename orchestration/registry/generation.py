"""One greedy completion in the prompt template the adapter was trained with (Alpaca unless recorded otherwise).

It goes through the evaluation's batched generation, so ``comol generate`` decodes exactly as the benchmarks do.
"""

from __future__ import annotations

from typing import Any

import torch

from orchestration.data.prompts import DEFAULT_TEMPLATE, build_prompt
from orchestration.evaluation.generation import GenerationConfig, generate


def complete(
    model: torch.nn.Module,
    tokenizer: Any,
    instruction: str,
    max_new_tokens: int = 128,
    template: str = DEFAULT_TEMPLATE,
) -> str:
    """Greedy decoding, as the paper evaluates; returns the completion only (prompt and specials stripped)."""
    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, batch_size=1)
    return generate(model, tokenizer, [build_prompt(instruction, template=template)], config, progress=False)[0][0]
