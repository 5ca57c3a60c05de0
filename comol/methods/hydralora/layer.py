"""HydraLoRA layer: A x once, then a gate-weighted sum of N B heads (one matmul over the stacked B).

As the authors' ``src/molora`` (hydra=True): the router reads the clean x, the shared A reads dropout(x).
"""

from __future__ import annotations

import torch

from comol.methods.hydralora.config import HydraLoRAConfig
from comol.methods.moe import ExpertsLayer


class HydraLoRALayer(ExpertsLayer):
    config_cls = HydraLoRAConfig
    prefix = "hydralora"
    shared_A = True
    adapter_layer_names = ("hydralora_A", "hydralora_B", "hydralora_router")

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x, self.router_probs(x))

    def flops_per_token(self) -> int:
        return self.dense_flops()
