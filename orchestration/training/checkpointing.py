"""Adapter-only checkpoints: the adapter in PEFT format, plus optimizer, scheduler and step to resume.

A checkpoint folder holds ``adapter/`` (``comol.save_adapter``: loadable on its own, plus the prompt template
it is trained with, so evaluation and ``comol generate`` prompt it as training did), and
``trainer_state.pt`` (full, unsharded optimizer and scheduler state and the step). Full state dicts
are gathered from the FSDP2 shards to rank 0 (frozen base weights excluded), so a checkpoint does not
depend on the number of workers that wrote it. On resume every rank reads the folder and keeps its
own shard of each tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from comol import save_adapter
from comol.persistence import WEIGHTS_NAME, adapter_state_dict
from orchestration.data.prompts import record_template

ADAPTER_DIR = "adapter"
STATE_FILE = "trainer_state.pt"
_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)


def gather_adapter(model: nn.Module) -> dict[str, torch.Tensor]:
    """Collective: the full trainable state on rank 0 (CPU), ``{}`` on the other ranks."""
    return get_model_state_dict(model, options=_GATHER)


def gather_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """Collective: the full optimizer state keyed by parameter name on rank 0, ``{}`` elsewhere."""
    return get_optimizer_state_dict(model, optimizer, options=_GATHER)


def write_checkpoint(
    directory: Path,
    model: nn.Module,
    adapter_config,
    adapter_state: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any] | None,
    scheduler_state: dict[str, Any] | None,
    step: int,
    prompt_template: str,
) -> Path:
    """Rank 0 only: write a checkpoint folder from already gathered state."""
    directory.mkdir(parents=True, exist_ok=True)
    save_adapter(model, directory / ADAPTER_DIR, adapter_config, state_dict=adapter_state)
    record_template(directory / ADAPTER_DIR, prompt_template)
    state = {"step": step, "optimizer": optimizer_state, "scheduler": scheduler_state}
    torch.save(state, directory / STATE_FILE)
    return directory


def _peft_to_model_keys(model: nn.Module) -> dict[str, str]:
    """PEFT's saved key → the model's own parameter name (what set_model_state_dict expects)."""
    names = {key: key for key in model.state_dict()}
    return dict(adapter_state_dict(model, names))  # values are the original names


def read_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> int:
    """Collective: load adapter weights (and optimizer/scheduler state) into the sharded model; the step."""
    saved = load_file(str(directory / ADAPTER_DIR / WEIGHTS_NAME))
    to_model = _peft_to_model_keys(model)
    missing = sorted(set(to_model) - set(saved))
    if missing:
        raise ValueError(f"checkpoint {directory} lacks adapter tensors {missing[:5]} of this model")
    full = {to_model[key]: value for key, value in saved.items() if key in to_model}
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, strict=False))
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    if optimizer is not None and state["optimizer"] is not None:
        set_optimizer_state_dict(model, optimizer, state["optimizer"], options=StateDictOptions(full_state_dict=True))
    if scheduler is not None and state["scheduler"] is not None:
        scheduler.load_state_dict(state["scheduler"])
    return int(state["step"])
