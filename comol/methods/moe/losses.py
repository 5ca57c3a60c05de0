"""Switch-Transformer load balancing at the scale the MoLE/AdaMoLE authors compute it."""

from __future__ import annotations

import torch


def load_balancing_loss(scores: torch.Tensor, active: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
    """``N · Σ_i f_i · P_i``, as the authors' ``get_layer_loss`` (``src/mole/layer.py``, ``src/adamole/layer.py``).

    ``active`` (..., N): which experts each token used; ``f_i`` = (tokens that used expert i) / tokens, so
    Σ f_i is the experts per token (k for top-k), not 1: normalising it to 1 made the loss k times weaker at
    the same coefficient. ``scores`` (..., N): what ``P_i`` averages, through which the gradient flows: the
    router's softmax (MoLA) or ``p_i − τ`` (AdaMoLE). ``f`` is not differentiable, as in Switch.
    ``real`` (...): which tokens count. The authors count padding too; here padding does not, so the balance
    is not pulled toward how pad tokens route.
    """
    n_experts = scores.shape[-1]
    scores = scores.reshape(-1, n_experts).float()
    active = active.reshape(-1, n_experts)
    if real is not None:
        keep = real.reshape(-1).bool()
        scores, active = scores[keep], active[keep]
    if scores.shape[0] == 0:
        return scores.sum()  # a call of padding only: nothing to balance
    fraction = active.float().sum(0) / scores.shape[0]
    return n_experts * (fraction * scores.mean(0)).sum()
