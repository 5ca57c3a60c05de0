"""AdaMoLE's config: a learned per-token threshold picks how many experts each token uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from comol.methods.moe import ExpertsConfig, check_nonnegative


@dataclass
class AdaMoLEConfig(ExpertsConfig):
    """Liu & Luo 2024: experts whose softmax weight clears τ = (1/N)·sigmoid(w_τ·x + b), renormalised."""

    method: ClassVar[str] = "adamole"

    aux_loss_coef: float = field(
        default=1e-3,
        metadata={
            "help": "Weight of the load-balancing loss N·Σ f_i·mean(p_i − τ) added to the training loss, at the "
            "authors' scale (f_i: share of tokens that kept expert i)."
        },
    )

    def validate(self) -> None:
        super().validate()
        check_nonnegative("aux_loss_coef", self.aux_loss_coef)
