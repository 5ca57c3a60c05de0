"""One row per method: a small config and the spec's per-layer trainable-parameter formula.

Every method in ``comol.METHODS`` must have at least one row here; the shared suite in
``test_adapter_contract.py`` runs each row through the same checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MethodCase:
    id: str
    method: str
    config: dict[str, Any]
    # trainable parameters of one adapted n→m layer, from ../shared/spec/methods.md
    params: Callable[[int, int, dict[str, Any]], int]
    identity_at_init: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _experts(n: int, m: int, r: int, experts: float) -> int:
    """N full LoRA experts plus an N×n router: N r(n+m) + N n (MoLoRA, MoLA, SMEAR)."""
    return round(experts * r * (n + m) + experts * n)


CASES: list[MethodCase] = [
    MethodCase("lora", "lora", {"r": 4}, lambda n, m, c: c["r"] * (n + m)),
    MethodCase(
        "comol",
        "comol",
        {"r": 4, "num_experts": 3},
        lambda n, m, c: c["r"] * (n + m) + c["num_experts"] * c["r"] ** 2 + c["num_experts"] * c["r"],
    ),
    MethodCase(
        "comol-no-cr",
        "comol",
        {"r": 4, "num_experts": 3, "core_routing": False},
        lambda n, m, c: c["r"] * (n + m) + c["num_experts"] * c["r"] ** 2 + c["num_experts"] * n,
    ),
    MethodCase(
        "molora", "molora", {"r": 4, "num_experts": 3}, lambda n, m, c: _experts(n, m, c["r"], c["num_experts"])
    ),
    MethodCase(
        "hydralora",
        "hydralora",
        {"r": 4, "num_experts": 3},
        lambda n, m, c: c["r"] * n + c["num_experts"] * c["r"] * m + c["num_experts"] * n,
    ),
    MethodCase("mola", "mola", {"r": 4, "num_experts": 3}, lambda n, m, c: _experts(n, m, c["r"], c["num_experts"])),
    # the tiny models have 2 layers: "2,4" gives layer 0 two experts and layer 1 four. The formula is linear
    # in N and each schedule entry covers equally many layers, so the sum over layers equals the count at the
    # schedule's mean N per layer (tests/methods/test_mola.py checks each layer's own count).
    MethodCase(
        "mola-schedule",
        "mola",
        {"r": 4, "expert_schedule": "2,4"},
        lambda n, m, c: _experts(n, m, c["r"], sum(c["expert_schedule"]) / len(c["expert_schedule"])),
    ),
    MethodCase(
        "adamole",
        "adamole",
        {"r": 4, "num_experts": 3},
        lambda n, m, c: _experts(n, m, c["r"], c["num_experts"]) + n + 1,
    ),
    MethodCase("smear", "smear", {"r": 4, "num_experts": 3}, lambda n, m, c: _experts(n, m, c["r"], c["num_experts"])),
    MethodCase("flylora", "flylora", {"r": 4, "top_k": 2}, lambda n, m, c: m * c["r"]),
]
