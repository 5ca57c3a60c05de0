"""HydraLoRA's config: one shared A, N B heads, soft token router."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from comol.methods.moe import ExpertsConfig


@dataclass
class HydraLoRAConfig(ExpertsConfig):
    """Tian et al. 2024: Δy = s · Σ_i g_i B_i A x with one A shared by all experts, g = softmax(W_g x)."""

    method: ClassVar[str] = "hydralora"
