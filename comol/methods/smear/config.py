"""SMEAR-for-LoRA's config: one route per example, experts merged in parameter space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from comol.methods.moe import ExpertsConfig


@dataclass
class SMEARConfig(ExpertsConfig):
    """Muqeeth et al. 2024: p = softmax(W_g · mean of the example's real tokens); Ā = Σ p_i A_i, B̄ = Σ p_i B_i."""

    method: ClassVar[str] = "smear"
