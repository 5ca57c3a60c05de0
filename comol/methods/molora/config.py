"""MoLoRA's config: N full LoRA experts mixed by a soft token router."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from comol.methods.moe import ExpertsConfig


@dataclass
class MoLoRAConfig(ExpertsConfig):
    """Zadouri et al. 2023, soft-weighted: Δy = s · Σ_i g_i B_i A_i x, g = softmax(W_g x)."""

    method: ClassVar[str] = "molora"
