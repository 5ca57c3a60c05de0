"""MoLA's config: sparse top-k routing, Switch load balancing, and an optional per-depth expert schedule."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

from comol.errors import ConfigError
from comol.methods.base import experts_field
from comol.methods.moe import ExpertsConfig, check_int, check_nonnegative

DEFAULT_EXPERTS = 8


def parse_schedule(value: object) -> list[int]:
    """``"2,4,6,8"`` or ``[2, 4, 6, 8]`` → ``[2, 4, 6, 8]``; anything else is a clear error."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        schedule = [int(str(item).strip()) for item in items]  # type: ignore[union-attr]
    except (TypeError, ValueError):
        schedule = []
    if not schedule or any(k < 1 for k in schedule):
        raise ConfigError(
            "expert_schedule", f"must be comma-separated expert counts >= 1, like '2,4,6,8'; got {value!r}"
        )
    return schedule


@dataclass
class MoLAConfig(ExpertsConfig):
    """Gao et al. 2024: top-k of softmax(W_g x), renormalised, plus a Switch load-balancing loss."""

    method: ClassVar[str] = "mola"

    num_experts: int | None = experts_field(  # type: ignore[assignment]
        None, f"Number of LoRA experts N in every layer (default {DEFAULT_EXPERTS}); or give expert_schedule instead."
    )
    expert_schedule: list[int] | None = field(
        default=None,
        metadata={
            "help": "Expert counts by depth, e.g. '2,4,6,8': the layers are split into len(schedule) equal "
            "groups by depth (quarters here) and group j gets schedule[j] experts (MoLA's 'triangle')."
        },
    )
    top_k: int = field(default=2, metadata={"help": "Experts each token uses (top-k of the softmax)."})
    aux_loss_coef: float = field(
        default=1e-3,
        metadata={
            "help": "Weight of the Switch load-balancing loss N·Σ f_i·P_i added to the training loss, at the "
            "authors' scale (f_i: share of tokens that picked expert i, so Σ f_i = top_k)."
        },
    )

    def __post_init__(self) -> None:
        if self.expert_schedule is not None:
            if self.num_experts is not None:
                raise ConfigError("num_experts", "give either a uniform expert count or expert_schedule, not both")
            self.expert_schedule = parse_schedule(self.expert_schedule)
        elif self.num_experts is None:
            self.num_experts = DEFAULT_EXPERTS
        super().__post_init__()

    def validate(self) -> None:
        if self.expert_schedule is None:
            super().validate()
            smallest = self.num_experts
        else:  # validate the shared fields without an N; each layer's own config checks its N
            super(ExpertsConfig, self).validate()
            smallest = min(self.expert_schedule)
        check_int("top_k", self.top_k, 1)
        if self.top_k > smallest:
            raise ConfigError("top_k", f"{self.top_k} exceeds the expert count {smallest}")
        check_nonnegative("aux_loss_coef", self.aux_loss_coef)

    def experts_at(self, depth: int | None, num_layers: int | None, module_name: str = "") -> int:
        """The expert count of a module at ``depth`` (0-based) of ``num_layers``."""
        if self.expert_schedule is None:
            return int(self.num_experts)  # type: ignore[arg-type]
        if depth is None or not num_layers:
            raise ConfigError(
                "expert_schedule",
                f"needs each module's layer depth and the model's num_hidden_layers; {module_name!r} has none",
            )
        groups = len(self.expert_schedule)
        return self.expert_schedule[min(depth * groups // num_layers, groups - 1)]

    def for_module(self, module_name: str, depth: int | None, num_layers: int | None) -> MoLAConfig:
        if self.expert_schedule is None:
            return self
        n_experts = self.experts_at(depth, num_layers, module_name)
        return dataclasses.replace(self, num_experts=n_experts, expert_schedule=None)
