"""Count what an adapter costs: real trainable parameters and the forward FLOPs it adds per token.

Counting instantiates the model on the meta device (shapes, no memory) and injects the real
layers, so the count is of real parameters, not a formula.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

from comol.injection import adapter_layers, inject_adapter
from comol.methods import AdapterConfig, AdapterLayer


@dataclass
class AdapterCost:
    trainable: int
    base: int
    per_target: dict[str, int] = field(default_factory=dict)
    adapter_flops_per_token: int = 0
    adapted_modules: int = 0

    @property
    def trainable_percent(self) -> float:
        return 100.0 * self.trainable / self.base if self.base else 0.0


def layer_flops_per_token(layer: nn.Module) -> int:
    """Forward FLOPs (2 × multiply-accumulates of the matmuls) one adapter layer adds per token."""
    if isinstance(layer, AdapterLayer):
        return layer.flops_per_token()
    # PEFT's LoRA layer: A (r×n) then B (m×r)
    base = layer.get_base_layer()
    r = layer.r[layer.active_adapters[0]]
    return 2 * r * (base.in_features + base.out_features)


def count_cost(model: nn.Module) -> AdapterCost:
    """Trainable (adapter) vs frozen (base) parameters, per target leaf name, and adapter FLOPs."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    base = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    per_target: dict[str, int] = defaultdict(int)
    flops = 0
    layers = adapter_layers(model)
    for name, layer in layers.items():
        leaf = name.rsplit(".", 1)[-1]
        base_params = {id(p) for p in layer.get_base_layer().parameters()}
        per_target[leaf] += sum(p.numel() for p in layer.parameters() if p.requires_grad and id(p) not in base_params)
        flops += layer_flops_per_token(layer)
    # Frozen adapter tensors (FlyLoRA's A) are not base parameters.
    for layer in layers.values():
        base_params = {id(p) for p in layer.get_base_layer().parameters()}
        base -= sum(p.numel() for p in layer.parameters() if not p.requires_grad and id(p) not in base_params)
    return AdapterCost(trainable, base, dict(per_target), flops, len(layers))


def meta_model(config_dict: dict) -> nn.Module:
    """A causal LM built from a config dict on the meta device: real modules, no weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    data = dict(config_dict)
    model_type = data.pop("model_type")
    hf_config = AutoConfig.for_model(model_type, **data)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config)


def cost_of(config_dict: dict, adapter: AdapterConfig) -> AdapterCost:
    model = meta_model(config_dict)
    inject_adapter(model, adapter)
    return count_cost(model)
