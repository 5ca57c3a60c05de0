"""SMEAR layer: route once per example on the mean of its real (non-pad) tokens, then merge the experts.

Input ``(..., T, n)``: the last-but-one axis holds an example's tokens, the axes before it the examples
(a 2-D input is one example). The padding mask comes from the model call: ``inject_adapter`` puts the
call's 2-D ``attention_mask`` on ``self.attention_mask`` (see ``uses_attention_mask``); without one, every
token counts. During cached generation the mask covers past + current tokens and the current ones are its
last T columns, so the route is taken on the tokens this call sees.
"""

from __future__ import annotations

import torch

from comol.methods.moe import ExpertsLayer
from comol.methods.smear.config import SMEARConfig


class SMEARLayer(ExpertsLayer):
    config_cls = SMEARConfig
    prefix = "smear"
    adapter_layer_names = ("smear_A", "smear_B", "smear_router")
    uses_attention_mask = True

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """Per-example routing weights (E, N) from the mean of each example's real tokens; x is (E, T, n)."""
        mask = self.token_mask(x.shape[0], x.shape[1])
        if mask is None:
            pooled = x.mean(1)
        else:
            keep = mask.to(x.dtype).unsqueeze(-1)
            pooled = (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)
        return self.router_probs(pooled).to(x.dtype)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[-2] if x.dim() > 1 else 1
        xe = x.reshape(-1, length, self.in_features)  # (E, T, n)
        p = self.route(xe)  # (E, N)
        a_bar = torch.einsum("en,nrk->erk", p, self.expert_A())  # (E, r, n): Ā = Σ p_i A_i
        b_bar = torch.einsum("en,mnr->emr", p, self.expert_B())  # (E, m, r): B̄ = Σ p_i B_i
        out = torch.bmm(torch.bmm(xe, a_bar.transpose(1, 2)), b_bar.transpose(1, 2))  # B̄ Ā x per token
        return out.reshape(*x.shape[:-1], self.out_features)

    def flops_per_token(self) -> int:
        """Per token: Ā x and B̄ (Ā x). The per-example cost (mean, router N·n, merge N·r·(n+m)) is
        shared by the example's tokens and not included."""
        r, n, m = self.config.r, self.in_features, self.out_features
        return 2 * r * (n + m)
