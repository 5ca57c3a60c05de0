"""FlyLoRA's config: rank r, how many rank components each token keeps, and the balancing bias's step."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from comol.errors import ConfigError
from comol.methods.base import AdapterConfig
from comol.methods.moe import check_int, check_nonnegative


@dataclass
class FlyLoRAConfig(AdapterConfig):
    """Zou et al. 2025: frozen sparse random A, top-k of A x + d per token, only B trained."""

    method: ClassVar[str] = "flylora"

    top_k: int | None = field(
        default=None,
        metadata={
            "help": "k: rank components each token keeps (top-k of A·x + d); A's rows have n·k/r non-zeros. "
            "Default r/4 (the paper's r=32, k=8)."
        },
    )
    bias_update_rate: float = field(
        default=1e-3,
        metadata={
            "help": "Step u of the balancing bias d: d_i += u·sign(mean load − load_i) after each training "
            "micro-batch, the load counting real tokens on all ranks."
        },
    )

    def __post_init__(self) -> None:
        if self.top_k is None and isinstance(self.r, int) and not isinstance(self.r, bool):
            self.top_k = max(1, self.r // 4)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        check_int("top_k", self.top_k, 1)
        if self.top_k > self.r:  # type: ignore[operator]
            raise ConfigError("top_k", f"{self.top_k} exceeds the rank {self.r}")
        check_nonnegative("bias_update_rate", self.bias_update_rate)
