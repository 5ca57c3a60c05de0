"""FlyLoRA layer: y = A x with a frozen sparse random A; keep the top-k of y + d; Δy = s · B (y ⊙ mask).

A (r×n) and the balancing bias d (r) are buffers in PEFT's ``BufferDict`` (persistent), listed in
``adapter_layer_names``: saved and loaded with the adapter, never trained. As in the authors' layer
(``src/flylora/layer.py``) y = A·dropout(x), and the top-k is taken on y + d in float32 (their fp32 bias
promotes the sum), so a bf16 compute dtype cannot round d's small steps away.

d moves by a fixed step toward balanced use of the r components (not by gradient): a training forward
records how often each component was chosen by REAL tokens (padding does not count; the authors count it),
and :func:`comol.after_backward`, which the training step calls after each micro-batch's backward, sums
those counts over data-parallel ranks and moves d, so d stays identical on every rank and the forward itself
runs no collective (activation checkpointing re-runs forwards inside backward). The authors also move d in
evaluation forwards; here only training moves it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from peft.tuners._buffer_dict import BufferDict
from torch import nn

from comol.methods.base import AdapterLayer
from comol.methods.flylora.config import FlyLoRAConfig


def sparse_random_projection(r: int, n: int, k: int, **factory: object) -> torch.Tensor:
    """r×n, each row with n·k/r non-zeros at random columns, values from N(0, 1/r²)."""
    A = torch.zeros(r, n, **factory)  # type: ignore[arg-type]
    if A.device.type == "meta":
        return A
    per_row = max(1, int(n * k / r))
    columns = torch.rand(r, n, device=A.device).argsort(dim=1)[:, :per_row]
    values = torch.randn(r, per_row, device=A.device, dtype=A.dtype) / r
    return A.scatter_(1, columns, values)


class FlyLoRALayer(AdapterLayer):
    config_cls = FlyLoRAConfig
    adapter_layer_names = ("flylora_B", "flylora_A", "flylora_d")
    uses_attention_mask = True  # the load counts real tokens only

    def __init__(self, base_layer: nn.Linear, config: FlyLoRAConfig, adapter_name: str = "default"):
        super().__init__(base_layer, config, adapter_name)
        r, n, m = config.r, self.in_features, self.out_features
        self._linear("flylora_B", r, m, init="zeros")
        self._buffer("flylora_A", sparse_random_projection(r, n, int(config.top_k), **self._factory()))
        self._buffer("flylora_d", torch.zeros(r, **self._factory()))  # type: ignore[arg-type]
        self._load: torch.Tensor | None = None  # this rank's counts from the last training forward

    def _buffer(self, name: str, tensor: torch.Tensor) -> None:
        if name not in self._modules:
            setattr(self, name, BufferDict(persistent=True))
        getattr(self, name)[self.active_adapter] = tensor

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        A, d = self._get("flylora_A"), self._get("flylora_d")
        y = F.linear(self.dropout(x), A.to(x.dtype))  # (..., r)
        with torch.no_grad():
            chosen = (y.float() + d.float()).topk(int(self.config.top_k), dim=-1).indices
            mask = torch.zeros_like(y).scatter_(-1, chosen, 1.0)
            if self.training:
                real = self.real_tokens(x)
                counted = mask if real is None else mask * real.unsqueeze(-1).to(mask.dtype)
                # Overwritten, not accumulated: a checkpointed forward re-run in backward records the same counts.
                self._load = counted.reshape(-1, self.config.r).sum(0, dtype=torch.float32)
        return self._get("flylora_B")(y * mask)

    def update_statistics(self) -> torch.Tensor | None:
        return self._load

    def apply_update(self, totals: torch.Tensor) -> None:
        """d_i += u · sign(mean load − load_i), with the load summed over every rank."""
        d = self._get("flylora_d")
        step = self.config.bias_update_rate * torch.sign(totals.mean() - totals)
        d.add_(step.to(device=d.device, dtype=d.dtype))
        self._load = None

    def flops_per_token(self) -> int:
        """A x computed densely (as it runs here), then B on the masked r-vector."""
        r, n, m = self.config.r, self.in_features, self.out_features
        return 2 * r * (n + m)
