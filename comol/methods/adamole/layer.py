"""AdaMoLE layer: weights (p_i − τ)·[p_i ≥ τ], renormalised, where τ is a learned per-token threshold.

Since τ < 1/N ≤ max_i p_i, every token keeps at least one expert. How many it keeps is data-dependent
and usually most of them early in training, so all experts are computed densely and masked.
The router and the threshold head read the clean x; the experts read dropout(x). The balancing loss is the
authors' (``src/adamole/layer.py``): ``N · Σ_i f_i · P_i`` with f_i the share of tokens that kept expert i
and P_i the mean of p_i − τ (not of p_i), over real tokens only.
"""

from __future__ import annotations

import torch
from torch import nn

from comol.methods.adamole.config import AdaMoLEConfig
from comol.methods.moe import ExpertsLayer, load_balancing_loss


class AdaMoLELayer(ExpertsLayer):
    config_cls = AdaMoLEConfig
    prefix = "adamole"
    adapter_layer_names = ("adamole_A", "adamole_B", "adamole_router", "adamole_threshold")
    uses_attention_mask = True  # the balancing loss counts real tokens only

    def __init__(self, base_layer: nn.Linear, config: AdaMoLEConfig, adapter_name: str = "default"):
        super().__init__(base_layer, config, adapter_name)
        # the threshold head w_τ·x + b: the one router-like layer with a bias (n + 1 parameters)
        threshold = nn.Linear(self.in_features, 1, bias=True, **self._factory())
        self._container("adamole_threshold", nn.ModuleDict)[self.active_adapter] = threshold

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """p − τ, the active mask p ≥ τ, and the renormalised weights, all (..., N), float32, where p is the
        router's softmax and τ = (1/N)·sigmoid(w_τ·x + b) the token's threshold."""
        tau = torch.sigmoid(self._get("adamole_threshold")(x).float()) / self.num_experts
        adapted = self.router_probs(x) - tau
        active = adapted >= 0
        weights = adapted * active
        return adapted, active, weights / weights.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        adapted, active, weights = self.gates(x)
        self._aux_loss = self.config.aux_loss_coef * load_balancing_loss(adapted, active, self.real_tokens(x))
        return self.mix(x, weights)

    def flops_per_token(self) -> int:
        return self.dense_flops() + 2 * self.in_features
