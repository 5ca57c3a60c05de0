"""MoLA layer: each token runs only its top-k experts (tokens are grouped by expert, not masked).

The router reads the clean x; the experts read dropout(x). The Switch loss is the authors' (``src/mole``):
``N · Σ_i f_i · P_i`` with f_i the share of tokens that picked expert i (Σ f_i = k), over real tokens only.
"""

from __future__ import annotations

import torch

from comol.methods.moe import ExpertsLayer, load_balancing_loss
from comol.methods.mola.config import MoLAConfig


class MoLALayer(ExpertsLayer):
    config_cls = MoLAConfig
    prefix = "mola"
    adapter_layer_names = ("mola_A", "mola_B", "mola_router")
    uses_attention_mask = True  # the balancing loss counts real tokens only

    def gates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router softmax (..., N), chosen experts (..., k) and their renormalised weights (..., k)."""
        probs = self.router_probs(x)
        top_p, top_i = probs.topk(self.config.top_k, dim=-1)
        return probs, top_i, top_p / top_p.sum(-1, keepdim=True)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        probs, top_i, weights = self.gates(x)
        active = torch.zeros_like(probs, dtype=torch.bool).scatter_(-1, top_i, True)
        self._aux_loss = self.config.aux_loss_coef * load_balancing_loss(probs, active, self.real_tokens(x))
        tokens = self.dropout(x).reshape(-1, self.in_features)
        r, k = self.config.r, self.config.top_k
        # Group the (token, slot) assignments by expert with one sort and one gather. Every per-expert piece is
        # a chunk of one split (of the gathered tokens, of the stacked A and B), so backward joins their
        # gradients with one cat each instead of one full-size zero tensor per expert.
        expert_of = top_i.reshape(-1)
        order = torch.argsort(expert_of, stable=True)
        counts = torch.bincount(expert_of, minlength=self.num_experts).tolist()
        token_of = order // k
        inputs = tokens.index_select(0, token_of).split(counts)
        gate = weights.reshape(-1)[order].to(x.dtype).unsqueeze(-1).split(counts)
        A, B = self.A.weight.split(r, dim=0), self.B.weight.split(r, dim=1)  # A_i: r×n, B_i: m×r
        outputs = [(inputs[i] @ A[i].T * gate[i]) @ B[i].T for i, count in enumerate(counts) if count]
        out = tokens.new_zeros(tokens.shape[0], self.out_features).index_add_(0, token_of, torch.cat(outputs))
        return out.reshape(*x.shape[:-1], self.out_features)

    def flops_per_token(self) -> int:
        r, n, m, N, k = self.config.r, self.in_features, self.out_features, self.num_experts, self.config.top_k
        return 2 * (n * N + k * (n * r + r + r * m))
