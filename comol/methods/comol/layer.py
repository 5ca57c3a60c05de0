"""The CoMoL layer: per-token soft merge of r×r cores inside one shared LoRA.

Merged form (run for training): x̂ = A x;  g = softmax(W_g x̂);  M = Σ g_i M_i;  Δy = s · B (M x̂).
Output-level form (the paper's Eq. 12, kept to check the merged one): Δy = s · Σ_i g_i B M_i A x.
The merge costs L·N·r² on top of LoRA's L·r·(n+m), so CoMoL costs about what LoRA does.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from comol.methods.base import AdapterLayer, kaiming_init_
from comol.methods.comol.config import CoMoLConfig


class CoMoLLayer(AdapterLayer):
    config_cls = CoMoLConfig
    adapter_layer_names = ("comol_A", "comol_B", "comol_cores", "comol_router")

    def __init__(self, base_layer: nn.Linear, config: CoMoLConfig, adapter_name: str = "default"):
        super().__init__(base_layer, config, adapter_name)
        r, n, m, N = config.r, self.in_features, self.out_features, config.num_experts
        self.num_experts = N
        self.core_routing = config.core_routing
        self._linear("comol_A", n, r, init="kaiming")
        self._linear("comol_B", r, m, init="zeros")
        cores = torch.empty(N, r, r, **self._factory())
        for core in cores:  # each core on its own: fan_in = r, so about U(±1/√r)
            kaiming_init_(core)
        self._parameter("comol_cores", cores)
        self._linear("comol_router", r if config.core_routing else n, N, init="default")
        # "merged" is the training path; "output" is the paper's Eq. 12, for checking only.
        self.forward_mode: Literal["merged", "output"] = "merged"

    def routing_weights(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Token-level softmax over experts, computed in float32 as the spec requires."""
        router = self._get("comol_router")
        logits = router(x_hat if self.core_routing else x)
        return torch.softmax(logits.float(), dim=-1).to(x_hat.dtype)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        A, B = self._get("comol_A"), self._get("comol_B")
        cores = self._get("comol_cores")  # N × r × r
        x_hat = A(x)  # (..., r)
        gates = self.routing_weights(x, x_hat)  # (..., N)
        if self.forward_mode == "output":
            # Σ_i g_i · B M_i x̂: one full LoRA output per expert (N× the cost of the merged form).
            per_expert = torch.einsum("nij,...j->...ni", cores, x_hat)  # (..., N, r)
            outputs = B(per_expert)  # (..., N, m)
            return torch.einsum("...n,...nm->...m", gates, outputs)
        merged = torch.einsum("...n,nij->...ij", gates, cores)  # (..., r, r): one core per token
        z = torch.matmul(merged, x_hat.unsqueeze(-1)).squeeze(-1)  # (..., r)
        return B(z)

    def flops_per_token(self) -> int:
        r, n, m, N = self.config.r, self.in_features, self.out_features, self.num_experts
        router_in = r if self.core_routing else n
        # A x; router; merge Σ g_i M_i (N·r²); M x̂ (r²); B z
        return 2 * (n * r + router_in * N + N * r * r + r * r + r * m)
