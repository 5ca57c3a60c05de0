"""Small real layers for the method tests: a frozen Linear wrapped by a method, B made random where asked."""

from __future__ import annotations

import torch
from torch import nn

from comol.methods import METHODS, AdapterLayer, make_config


def make_layer(method: str, n: int = 12, m: int = 10, seed: int = 0, random: bool = True, **fields) -> AdapterLayer:
    """One adapted ``nn.Linear(n, m)``; ``random`` gives every trainable tensor random values (B included).
    Dropout is 0 unless asked for (the methods default to 0.1): formula checks need a deterministic path."""
    fields.setdefault("dropout", 0.0)
    torch.manual_seed(seed)
    layer = METHODS[method].layer_cls(nn.Linear(n, m).requires_grad_(False), make_config(method, **fields))
    if random:
        with torch.no_grad():
            for p in layer.parameters():
                if p.requires_grad:
                    p.normal_(0, 0.5)
    return layer


def expert_weights(layer) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """A_i (r×n) and B_i (m×r) cut out of the stacked storage by hand (rows / columns i·r … (i+1)·r)."""
    r, N = layer.config.r, layer.num_experts
    A = layer.A.weight
    B = layer.B.weight
    As = [A if layer.shared_A else A[i * r : (i + 1) * r] for i in range(N)]
    Bs = [B[:, i * r : (i + 1) * r] for i in range(N)]
    return As, Bs
