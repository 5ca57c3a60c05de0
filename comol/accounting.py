"""Count what an adapter costs: real trainable parameters and the forward FLOPs it adds per token.

Counting instantiates the model on the meta device (shapes, no memory) and injects the real
layers, so the count is of real parameters, not a formula.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

from comol.errors import ConfigError
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


# Shape settings of a config.json: a zero or negative one builds no model (or one whose numbers mean nothing).
_SIZE_KEYS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads")
_SIZE_SUFFIXES = ("_size", "_dim", "_heads", "_layers", "_experts")


def check_model_config(config_dict: dict) -> None:
    """Refuse a config.json whose model type transformers does not know or whose shapes are not positive
    integers, naming the key: transformers itself fails deep inside model construction."""
    from transformers import CONFIG_MAPPING

    model_type = config_dict.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        examples = [t for t in ("llama", "qwen2", "qwen3", "mistral", "gemma2", "phi3") if t in CONFIG_MAPPING]
        raise ConfigError(
            "model_type",
            f"{model_type!r} is not a model type transformers knows (e.g. {', '.join(examples)})",
        )
    for key, value in config_dict.items():
        is_size = key in _SIZE_KEYS or (key.endswith(_SIZE_SUFFIXES) and isinstance(value, int | float))
        if is_size and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ConfigError(key, f"must be a positive integer, got {value!r}")


def meta_model(config_dict: dict) -> nn.Module:
    """A causal LM built from a config dict on the meta device: real modules, no weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    check_model_config(config_dict)
    data = dict(config_dict)
    model_type = data.pop("model_type")
    try:
        hf_config = AutoConfig.for_model(model_type, **data)
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(hf_config)
    except (ValueError, TypeError, KeyError, RuntimeError) as err:  # a config transformers cannot build
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError("model_type", f"cannot build a {model_type} causal LM from this config: {first}") from None


def cost_of(config_dict: dict, adapter: AdapterConfig) -> AdapterCost:
    model = meta_model(config_dict)
    inject_adapter(model, adapter)
    return count_cost(model)
