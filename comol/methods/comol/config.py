"""CoMoL's config: rank, expert count and whether the router works in core space."""

from __future__ import annotations

from dataclasses import dataclass, field

from comol.errors import ConfigError
from comol.methods.base import AdapterConfig, experts_field


@dataclass
class CoMoLConfig(AdapterConfig):
    """Core Space Mixture of LoRA (arXiv 2603.00573): one shared LoRA (A, B) with N r×r cores. The inherited
    ``dropout`` (default 0.1, the authors') drops x, the merged core and the product, as their layer does."""

    method = "comol"

    num_experts: int = experts_field(8, "Number of r×r core experts N.")
    core_routing: bool = field(
        default=True,
        metadata={
            "help": "Route on the core-space input A·x (router N×r, the paper's CR). "
            "False routes on x (router N×n, the 'w/o CR' ablation)."
        },
    )

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.num_experts, int) or isinstance(self.num_experts, bool) or self.num_experts < 1:
            raise ConfigError("num_experts", f"must be an integer >= 1, got {self.num_experts!r}")
        if not isinstance(self.core_routing, bool):
            raise ConfigError("core_routing", f"must be true or false, got {self.core_routing!r}")
