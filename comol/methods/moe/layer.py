"""N LoRA experts stored stacked, so one matmul serves all of them.

A: one ``nn.Linear(n, N·r)`` whose rows ``[i·r, (i+1)·r)`` are expert i's A_i (r×n). Kaiming-uniform
on the stack has fan_in = n, exactly as each A_i on its own would. B: one ``nn.Linear(N·r, m)`` whose
columns ``[i·r, (i+1)·r)`` are B_i (m×r), zeros. Then Σ_i g_i B_i A_i x = B_stack · (g ⊗ A_stack x).

Dropout: the router reads the clean x (the authors' ``lora_gating(x)``); only the experts' input is dropped.
One dropout mask serves all experts here, where the authors' per-expert ``nn.Dropout`` modules draw one each:
per-expert masks would keep N copies of every adapted layer's input for backward.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from comol.methods.base import AdapterLayer
from comol.methods.moe.config import ExpertsConfig


class ExpertsLayer(AdapterLayer):
    """Base for the mixture baselines: stacked experts plus a bias-free token router (N×n)."""

    prefix: ClassVar[str] = ""
    shared_A: ClassVar[bool] = False  # HydraLoRA: one A for all experts

    def __init__(self, base_layer: nn.Linear, config: ExpertsConfig, adapter_name: str = "default"):
        super().__init__(base_layer, config, adapter_name)
        r, n, m, N = config.r, self.in_features, self.out_features, config.num_experts
        self.num_experts = N
        self._linear(f"{self.prefix}_A", n, r if self.shared_A else N * r, init="kaiming")
        self._linear(f"{self.prefix}_B", N * r, m, init="zeros")
        self._linear(f"{self.prefix}_router", n, N, init="default")

    @property
    def A(self) -> nn.Linear:
        return self._get(f"{self.prefix}_A")

    @property
    def B(self) -> nn.Linear:
        return self._get(f"{self.prefix}_B")

    def expert_A(self) -> torch.Tensor:
        """A_i stacked: (N, r, n), a view of the stored weight."""
        return self.A.weight.view(self.num_experts, self.config.r, self.in_features)

    def expert_B(self) -> torch.Tensor:
        """B_i stacked: (m, N, r), a view of the stored weight (B_i = ``expert_B()[:, i]``)."""
        return self.B.weight.view(self.out_features, self.num_experts, self.config.r)

    def router_probs(self, x: torch.Tensor) -> torch.Tensor:
        """softmax(W_g x) in float32, as the spec requires."""
        return torch.softmax(self._get(f"{self.prefix}_router")(x).float(), dim=-1)

    def mix(self, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
        """Σ_i gates_i · B_i A_i dropout(x) for every token (dense: all N experts computed); ``x`` is clean."""
        h = self.A(self.dropout(x))
        h = h.unsqueeze(-2) if self.shared_A else h.unflatten(-1, (self.num_experts, self.config.r))
        return self.B((h * gates.to(x.dtype).unsqueeze(-1)).flatten(-2))

    def dense_flops(self) -> int:
        """Forward FLOPs of :meth:`mix` plus the router, per token."""
        r, n, m, N = self.config.r, self.in_features, self.out_features, self.num_experts
        a_rows = r if self.shared_A else N * r
        return 2 * (n * N + n * a_rows + N * r + N * r * m)
