"""Routers see the clean input: dropout is on the adapter path only, as in the authors' layers (``gate(x)``).

Every router, threshold head and SMEAR pool must read the layer's input x itself, never dropout(x); CoMoL's
core routing reads x̂ = A · dropout(x), the same x̂ its adapter path uses.
"""

from __future__ import annotations

import pytest
import torch
from helpers import make_layer

# (method, extra config fields, the modules that must read the clean x)
ROUTED = [
    ("molora", {}, ["molora_router"]),
    ("hydralora", {}, ["hydralora_router"]),
    ("mola", {}, ["mola_router"]),
    ("adamole", {}, ["adamole_router", "adamole_threshold"]),
    ("smear", {}, ["smear_router"]),
    ("comol", {"core_routing": False}, ["comol_router"]),
]


def record_inputs(layer, names: list[str]) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    for name in names:
        layer._get(name).register_forward_hook(lambda mod, inp, out, name=name: seen.update({name: inp[0]}))
    return seen


@pytest.mark.parametrize(("method", "fields", "routers"), ROUTED, ids=[r[0] for r in ROUTED])
def test_routers_read_the_clean_input_in_training(method, fields, routers):
    layer = make_layer(method, r=3, num_experts=4, dropout=0.5, **fields)
    layer.train()
    x = torch.randn(2, 5, 12)
    seen = record_inputs(layer, routers)
    first = layer(x)
    for name in routers:
        assert torch.equal(seen[name], x), f"{method}: {name} read a dropped input"
    assert not torch.allclose(layer(x), first)  # control: the adapter path IS dropped (two draws differ)


def test_comol_core_routing_reads_A_of_the_dropped_input():
    """With core routing the router's input is x̂ = A·dropout(x): the very x̂ the adapter path multiplies."""
    layer = make_layer("comol", r=3, num_experts=4, dropout=0.5)
    layer.train()
    seen = record_inputs(layer, ["comol_router", "comol_A"])
    x = torch.randn(2, 5, 12)
    layer(x)
    dropped = seen["comol_A"]
    assert (dropped == 0).any() and not torch.equal(dropped, x)  # the adapter path's input was dropped
    torch.testing.assert_close(seen["comol_router"], layer._get("comol_A")(dropped), rtol=0, atol=0)
