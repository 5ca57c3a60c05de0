"""SMEAR-for-LoRA's config: one route per example from its prompt, experts merged in parameter space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from comol.methods.moe import ExpertsConfig


@dataclass
class SMEARConfig(ExpertsConfig):
    """Muqeeth et al. 2024 in a causal LM: p = softmax(W_g · mean of the example's prompt tokens up to each
    position), so the response shares the prompt's route; Ā = Σ p_i A_i, B̄ = Σ p_i B_i (see layer.py)."""

    method: ClassVar[str] = "smear"
