"""Put adapters into a model: match target modules as PEFT does, wrap them, freeze the rest."""

from __future__ import annotations

import inspect
import re

import torch
from peft import inject_adapter_in_model
from torch import nn

from comol.errors import TargetNotFoundError
from comol.methods import AdapterConfig, AdapterLayer, get_method

_LAYER_INDEX = re.compile(r"\.(\d+)\.")


def matches_target(targets: list[str] | str, module_name: str) -> bool:
    """PEFT's rule: a string is a regex that must match the whole name; a list matches name suffixes."""
    if isinstance(targets, str):
        return re.fullmatch(targets, module_name) is not None
    return any(module_name == t or module_name.endswith("." + t) for t in targets)


def linear_module_names(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def find_targets(model: nn.Module, targets: list[str] | str) -> list[str]:
    """Names of the Linear modules ``targets`` selects; raises listing the model's Linears if none."""
    linears = linear_module_names(model)
    matched = [name for name in linears if matches_target(targets, name)]
    if not matched:
        raise TargetNotFoundError(targets, linears)
    return matched


def _depth(module_name: str) -> int | None:
    found = _LAYER_INDEX.search(module_name)
    return int(found.group(1)) if found else None


def inject_adapter(model: nn.Module, config: AdapterConfig) -> nn.Module:
    """Wrap every target Linear of ``model`` (in place) and leave only adapter weights trainable."""
    method = get_method(config.method)
    targets = find_targets(model, config.target_modules)
    for param in model.parameters():
        param.requires_grad_(False)
    if method.layer_cls is None:  # PEFT-native: PEFT injects its own layers and marks them trainable
        inject_adapter_in_model(config.to_peft(), model)  # type: ignore[attr-defined]
        for param in model.parameters():  # as get_peft_model's autocast_adapter_dtype: fp32 adapters
            if param.requires_grad and param.dtype in (torch.float16, torch.bfloat16):
                param.data = param.data.float()
        return model
    num_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    layers = []
    for name in targets:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        base = getattr(parent, child_name)
        layer_config = config.for_module(name, _depth(name), num_layers)
        layers.append(method.layer_cls(base, layer_config))
        setattr(parent, child_name, layers[-1])
    if method.layer_cls.uses_attention_mask:
        attach_attention_mask(model, layers)
    return model


def attach_attention_mask(model: nn.Module, layers: list[AdapterLayer]) -> None:
    """Give ``layers`` the 2-D ``attention_mask`` of each call of ``model`` (no global state).

    A forward pre-hook on ``model`` sets ``layer.attention_mask`` for the call (None when the call has
    none). After an inference call (grad disabled) a forward hook clears it; after a call that may be
    back-propagated it stays until the next call replaces it, so activation checkpointing, which re-runs
    the layers during backward, routes with the same mask.
    """
    signature = inspect.signature(model.forward)

    def set_mask(module: nn.Module, args: tuple, kwargs: dict) -> None:
        try:
            mask = signature.bind_partial(*args, **kwargs).arguments.get("attention_mask")
        except TypeError:
            mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() != 2:
            raise ValueError(
                f"{type(layers[0]).__name__} needs a 2-D (batch, sequence) attention_mask, got shape "
                f"{tuple(mask.shape)}"
            )
        for layer in layers:
            layer.attention_mask = mask

    def clear_mask(module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        if not torch.is_grad_enabled():
            for layer in layers:
                layer.attention_mask = None

    model.register_forward_pre_hook(set_mask, with_kwargs=True)
    model.register_forward_hook(clear_mask, with_kwargs=True, always_call=True)


def adapter_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every adapter layer in ``model`` by module name (ours and PEFT's LoRA layers alike)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return {name: m for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)}


def set_forward_mode(model: nn.Module, mode: str) -> None:
    """Switch CoMoL layers between the merged (training) and output-level (checking) computation."""
    for module in model.modules():
        if isinstance(module, AdapterLayer) and hasattr(module, "forward_mode"):
            module.forward_mode = mode


def aux_loss(model: nn.Module) -> torch.Tensor:
    """The adapters' auxiliary (load-balancing) loss from the last forward, already weighted by each
    method's coefficient; a zero scalar for methods that have none. Add it to the training loss."""
    losses = [
        loss for layer in model.modules() if isinstance(layer, AdapterLayer) and (loss := layer.aux_loss()) is not None
    ]
    if not losses:
        param = next(model.parameters())
        return torch.zeros((), device=param.device, dtype=torch.float32)
    return torch.stack([loss.float() for loss in losses]).sum()
