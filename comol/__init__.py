"""comol: CoMoL (Core Space Mixture of LoRA) and baseline adapters for Hugging Face causal LMs.

The library has no Ray or MLflow imports; orchestration builds on it.
"""

from comol.accounting import AdapterCost, cost_of, count_cost
from comol.errors import ConfigError, TargetNotFoundError
from comol.injection import (
    adapter_layers,
    after_backward,
    aux_loss,
    find_targets,
    inject_adapter,
    set_forward_mode,
    takes_prompt_mask,
)
from comol.methods import METHODS, AdapterConfig, CoMoLConfig, LoRAConfig, get_method, make_config
from comol.persistence import load_adapter, read_adapter_config, save_adapter

__all__ = [
    "METHODS",
    "AdapterConfig",
    "AdapterCost",
    "CoMoLConfig",
    "ConfigError",
    "LoRAConfig",
    "TargetNotFoundError",
    "adapter_layers",
    "after_backward",
    "aux_loss",
    "cost_of",
    "count_cost",
    "find_targets",
    "get_method",
    "inject_adapter",
    "load_adapter",
    "make_config",
    "read_adapter_config",
    "save_adapter",
    "set_forward_mode",
    "takes_prompt_mask",
]
