"""One greedy completion in the prompt template the adapter was trained with (Alpaca unless recorded otherwise).

Uses the evaluation's batched generation helper when it is installed, so ``comol generate`` decodes
exactly as the benchmarks do; otherwise plain greedy ``model.generate``.
"""

from __future__ import annotations

from typing import Any

import torch

from orchestration.data.prompts import DEFAULT_TEMPLATE, build_prompt


@torch.no_grad()
def complete(
    model: torch.nn.Module,
    tokenizer: Any,
    instruction: str,
    max_new_tokens: int = 128,
    template: str = DEFAULT_TEMPLATE,
) -> str:
    """Greedy decoding, as the paper evaluates; returns the completion only (prompt and specials stripped)."""
    prompt = build_prompt(instruction, template=template)
    try:
        from orchestration.evaluation.generation import GenerationConfig, generate
    except ImportError:
        generate = None
    if generate is not None:
        config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, batch_size=1)
        return generate(model, tokenizer, [prompt], config, progress=False)[0][0]
    encoded = tokenizer(prompt, return_tensors="pt")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    output = model.generate(
        **encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad, eos_token_id=tokenizer.eos_token_id
    )
    return tokenizer.decode(output[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
