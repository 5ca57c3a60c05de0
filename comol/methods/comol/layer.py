"""The CoMoL layer: per-token soft merge of r×r cores inside one shared LoRA, as the authors' layer computes it.

Merged form (run for training), per token, in the authors' row-vector convention (``src/mocorelora/layer.py``):
    x̂ = A · dropout(x);  g = softmax(W_g x̂)  (w/o core routing: W_g x, on the clean x);  M = Σ g_i M_i;
    Δy = s · B · dropout(x̂ᵀ · dropout(M))
Every dropout is on whenever ``dropout > 0`` in training mode, each with its own mask, drawn in the authors'
order (x, merged core, product), so with the same seed this layer reproduces theirs exactly.
Output-level form (the paper's Eq. 12, kept to check the merged one): Δy = s · Σ_i g_i · B (x̂ᵀ M_i). Dropping
the merged core and the product is linear, so the checking form applies the SAME masks to every expert and the
two forms agree in training mode too (given the same random state), not only in eval mode.
The merge costs L·N·r² on top of LoRA's L·r·(n+m), so CoMoL costs about what LoRA does.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
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

    @classmethod
    def upgrade_saved(cls, tensors: dict[str, torch.Tensor], version: int) -> dict[str, torch.Tensor]:
        """Format 1 applied each core as M x̂ (column form); format 2 applies x̂ᵀ M as the authors do. The two
        are the same function of the transposed core, so a format-1 adapter loads with its cores transposed."""
        if version >= 2:
            return tensors
        return {k: v.transpose(-1, -2).contiguous() if k.endswith(".comol_cores") else v for k, v in tensors.items()}

    def routing_weights(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        """Token-level softmax over experts, in float32 as the spec requires: on x̂ = A·dropout(x) with core
        routing, on the clean x without it (the authors' ``lora_router(lora_A_x)`` / ``lora_router(x)``)."""
        router = self._get("comol_router")
        logits = router(x_hat if self.core_routing else x)
        return torch.softmax(logits.float(), dim=-1).to(x_hat.dtype)

    def _keep(self, shape: torch.Size, like: torch.Tensor) -> torch.Tensor | None:
        """The scaled keep-mask ``nn.Dropout`` would multiply a tensor of ``shape`` by (None when inactive)."""
        if not self.training or self.config.dropout == 0:
            return None
        return F.dropout(like.new_ones(shape), self.config.dropout, training=True)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        A, B = self._get("comol_A"), self._get("comol_B")
        cores = self._get("comol_cores")  # N × r × r
        x_hat = A(self.dropout(x))  # (..., r)
        gates = self.routing_weights(x, x_hat)  # (..., N)
        r = self.config.r
        core_keep = self._keep((*x_hat.shape[:-1], r, r), x_hat)  # on the merged core, per token
        product_keep = self._keep(x_hat.shape, x_hat)  # on x̂ᵀ M
        if self.forward_mode == "output":
            # Σ_i g_i · B (x̂ᵀ M_i): one full LoRA output per expert (N× the cost of the merged form).
            if core_keep is None:
                per_expert = torch.einsum("...i,nij->...nj", x_hat, cores)  # (..., N, r)
            else:
                per_expert = torch.einsum("...i,...ij,nij->...nj", x_hat, core_keep, cores)
            if product_keep is not None:
                per_expert = per_expert * product_keep.unsqueeze(-2)
            return torch.einsum("...n,...nm->...m", gates, B(per_expert))
        merged = torch.einsum("...n,nij->...ij", gates, cores)  # (..., r, r): one core per token
        if core_keep is not None:
            merged = merged * core_keep
        z = torch.matmul(x_hat.unsqueeze(-2), merged).squeeze(-2)  # x̂ᵀ M: (..., r)
        if product_keep is not None:
            z = z * product_keep
        return B(z)

    def flops_per_token(self) -> int:
        r, n, m, N = self.config.r, self.in_features, self.out_features, self.num_experts
        router_in = r if self.core_routing else n
        # A x; router; merge Σ g_i M_i (N·r²); x̂ᵀ M (r²); B z
        return 2 * (n * r + router_in * N + N * r * r + r * r + r * m)
