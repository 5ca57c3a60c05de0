"""Helpers for the training tests: a tiny random Llama with a byte-level tokenizer, saved as a local model
folder (Ray workers build their model from the config, so the model must be loadable by path)."""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_model(folder: Path, seed: int = 0) -> Path:
    """tests/conftest.py's tiny Llama (2 layers, hidden 32), sized for the byte vocabulary and Alpaca prompts."""
    from tiny_models import byte_tokenizer, tiny_config  # test process only: Ray workers import this module too
    from transformers import AutoModelForCausalLM

    tokenizer = byte_tokenizer()
    config = tiny_config(vocab_size=len(tokenizer), max_position_embeddings=512)
    config.pad_token_id = tokenizer.pad_token_id
    config.eos_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


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
    }
