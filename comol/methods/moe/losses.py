"""Switch-Transformer load balancing, generalised to any set of active experts per token."""

from __future__ import annotations

import torch


def load_balancing_loss(probs: torch.Tensor, active: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """``N · Σ_i f_i · P_i`` (Fedus et al. 2021), equal to 1 when use is perfectly balanced.

    ``probs`` (..., N): the router's softmax; ``active`` (..., N): which experts each token used;
    ``real`` (...): which tokens count (padding does not: it would pull the balance toward how pad tokens
    route). ``f_i`` is expert i's share of all (token, expert) assignments (not differentiable, as in
    Switch); ``P_i`` is its mean router probability, through which the gradient flows.
    """
    n_experts = probs.shape[-1]
    probs = probs.reshape(-1, n_experts).float()
    active = active.reshape(-1, n_experts)
    if real is not None:
        keep = real.reshape(-1).bool()
        probs, active = probs[keep], active[keep]
        if probs.shape[0] == 0:
            return probs.sum()  # a call of padding only: nothing to balance
    counts = active.float().sum(0)
    share = counts / counts.sum().clamp_min(1.0)
    return n_experts * (share * probs.mean(0)).sum()
