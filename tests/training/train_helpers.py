"""Helpers the training tests hand to Ray workers by import path (workers do not have tests/ on their path,
so this module imports nothing from it)."""

from __future__ import annotations


def probe_hook(model, tokenizer, options, *, rank: int, world_size: int, device) -> dict[str, float]:
    """A post-training hook (orchestration/training/hooks.py contract) that reports what it was given."""
    from comol import adapter_layers

    b_weights = [p for name, p in model.named_parameters() if "comol_B" in name]
    return {
        "max_abs_B": max(float(p.abs().max()) for p in b_weights),
        "adapter_layers": float(len(adapter_layers(model))),
        "world_size": float(world_size),
        "in_eval_mode": float(not model.training),
        "option": float(options["option"]),
        "short_prompt": float(options["prompt_template"] == "short"),  # the template the adapter records
    }
