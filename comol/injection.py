"""Put adapters into a model: match target modules as PEFT does, wrap them, freeze the rest."""

from __future__ import annotations

import inspect
import re

import torch
import torch.distributed as dist
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
    """Wrap every target Linear of ``model`` (in place) and leave only adapter weights trainable.

    The new layers take the model's train/eval mode (a fresh module is in training mode): otherwise the
    adapters' dropout would stay active in a model that was put in eval mode before injection.
    """
    method = get_method(config.method)
    targets = find_targets(model, config.target_modules)
    for param in model.parameters():
        param.requires_grad_(False)
    if method.layer_cls is None:  # PEFT-native: PEFT injects its own layers and marks them trainable
        inject_adapter_in_model(config.to_peft(), model)  # type: ignore[attr-defined]
        for param in model.parameters():  # as get_peft_model's autocast_adapter_dtype: fp32 adapters
            if param.requires_grad and param.dtype in (torch.float16, torch.bfloat16):
                param.data = param.data.float()
        return model.train(model.training)
    num_layers = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    layers = []
    for name in targets:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        base = getattr(parent, child_name)
        layer_config = config.for_module(name, _depth(name), num_layers)
        layers.append(method.layer_cls(base, layer_config).train(model.training))
        setattr(parent, child_name, layers[-1])
    if method.layer_cls.uses_attention_mask or method.layer_cls.uses_prompt_mask:
        attach_call_masks(model, layers)
    return model


def attach_call_masks(model: nn.Module, layers: list[AdapterLayer]) -> None:
    """Give ``layers`` what each call of ``model`` knows about its tokens (no global state).

    A forward pre-hook on ``model`` sets, for the call, ``layer.attention_mask`` (the 2-D padding mask, None
    when the call has none) and ``layer.past_length`` (tokens already in the call's KV cache: 0 unless it
    continues a cached generation). For layers that route on the prompt (``uses_prompt_mask``: SMEAR) it also
    takes the call's ``prompt_mask`` keyword (1 on prompt tokens, shaped like the attention mask) out of the
    call, so the model itself never sees it, and sets ``layer.prompt_mask``. After an inference call (grad
    disabled) a forward hook clears them; after a call that may be back-propagated they stay until the next
    call replaces them, so activation checkpointing, which re-runs the layers during backward, routes with
    the same masks.
    """
    signature = inspect.signature(model.forward)
    routes_on_prompt = any(layer.uses_prompt_mask for layer in layers)
    name = type(layers[0]).__name__

    def set_masks(module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        prompt_mask = kwargs.pop("prompt_mask", None) if routes_on_prompt else None
        try:
            bound = signature.bind_partial(*args, **kwargs).arguments
        except TypeError:
            bound = kwargs
        mask = bound.get("attention_mask")
        for label, value in (("attention_mask", mask), ("prompt_mask", prompt_mask)):
            if value is not None and value.dim() != 2:
                raise ValueError(f"{name} needs a 2-D (batch, sequence) {label}, got shape {tuple(value.shape)}")
        cache = bound.get("past_key_values")
        past = int(cache.get_seq_length()) if hasattr(cache, "get_seq_length") else 0
        for layer in layers:
            layer.attention_mask, layer.prompt_mask, layer.past_length = mask, prompt_mask, past
        return args, kwargs

    def clear_masks(module: nn.Module, args: tuple, kwargs: dict, output: object) -> None:
        if not torch.is_grad_enabled():
            for layer in layers:
                layer.attention_mask, layer.prompt_mask, layer.past_length = None, None, 0

    model.register_forward_pre_hook(set_masks, with_kwargs=True)
    model.register_forward_hook(clear_masks, with_kwargs=True, always_call=True)


def takes_prompt_mask(model: nn.Module) -> bool:
    """Whether ``model`` has adapter layers that route on the prompt (SMEAR): pass ``prompt_mask=`` with its
    training calls then (other models' forwards do not accept the keyword)."""
    return any(isinstance(layer, AdapterLayer) and layer.uses_prompt_mask for layer in model.modules())


def after_backward(model: nn.Module) -> None:
    """Apply the adapters' non-gradient updates from the last training forward (FlyLoRA's balancing bias).

    Call it on every rank after each training micro-batch's backward. Under data parallelism it sums the layers'
    counts over all ranks in one all-reduce, so every rank applies the same update while the layers' forwards
    stay free of collectives. A no-op for methods without such updates.
    """
    pending = [
        (layer, stats)
        for layer in model.modules()
        if isinstance(layer, AdapterLayer) and (stats := layer.update_statistics()) is not None
    ]
    if not pending:
        return
    totals = torch.cat([stats.reshape(-1).float() for _, stats in pending])
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(totals)
    for (layer, stats), total in zip(pending, totals.split([s.numel() for _, s in pending]), strict=True):
        layer.apply_update(total.view(stats.shape))


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
