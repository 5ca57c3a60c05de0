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
]
