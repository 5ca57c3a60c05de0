"""MoLoRA layer: every token uses every expert, weighted by its softmax gate.

As the authors' ``src/molora`` (hydra=False): the router reads the clean x, the experts read dropout(x).
"""

from __future__ import annotations

import torch

from comol.methods.moe import ExpertsLayer
from comol.methods.molora.config import MoLoRAConfig


class MoLoRALayer(ExpertsLayer):
    config_cls = MoLoRAConfig
    prefix = "molora"
    adapter_layer_names = ("molora_A", "molora_B", "molora_router")

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        return self.mix(x, self.router_probs(x))

    def flops_per_token(self) -> int:
        return self.dense_flops()
