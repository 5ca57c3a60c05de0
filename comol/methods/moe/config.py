"""The expert count every mixture baseline shares, named and checked as CoMoL's is."""

from __future__ import annotations

import math
from dataclasses import dataclass

from comol.errors import ConfigError
from comol.methods.base import AdapterConfig, experts_field


def check_int(name: str, value: object, minimum: int) -> None:
    """Integers only (``True`` is not 1 here): a clear error naming the field."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(name, f"must be an integer >= {minimum}, got {value!r}")


def check_nonnegative(name: str, value: object) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ConfigError(name, f"must be a finite number >= 0, got {value!r}")


@dataclass
class ExpertsConfig(AdapterConfig):
    """A LoRA with N experts and a token router W_g (N×n, no bias)."""

    num_experts: int = experts_field(8, "Number of LoRA experts N.")

    def validate(self) -> None:
        super().validate()
        check_int("num_experts", self.num_experts, 1)
