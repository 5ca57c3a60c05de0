"""CoMoL's layer against the spec and the authors' layer: merged ≡ output-level, init, routing input, scale,
dropout (on x, the merged core and the product), dtypes."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from comol.methods.comol import CoMoLConfig, CoMoLLayer


def make_layer(n=24, m=20, r=4, N=3, core_routing=True, alpha=None, dropout=0.0, random_b=True, seed=0):
    torch.manual_seed(seed)
    layer = CoMoLLayer(
        nn.Linear(n, m), CoMoLConfig(r=r, num_experts=N, core_routing=core_routing, alpha=alpha, dropout=dropout)
    )
    if random_b:  # B starts at zero; give it values so the adapter's output is not trivially zero
        nn.init.normal_(layer.comol_B["default"].weight)
    return layer


@pytest.mark.parametrize("core_routing", [True, False])
@pytest.mark.parametrize("shape", [(7,), (2, 5), (2, 3, 4)])
def test_merged_equals_output_level(core_routing, shape):
    layer = make_layer(core_routing=core_routing, alpha=8.0)
    x = torch.randn(*shape, layer.in_features)
    layer.forward_mode = "merged"
    merged = layer(x)
    layer.forward_mode = "output"
    output_level = layer(x)
    assert merged.shape == (*shape, layer.out_features)
    torch.testing.assert_close(merged, output_level, rtol=1e-5, atol=1e-5)
    # and the adapter really contributes (B is random here)
    assert (merged - layer.base_layer(x)).abs().max() > 1e-3


def test_merged_form_matches_hand_computation():
    layer = make_layer(n=6, m=5, r=3, N=4, alpha=6.0)
    x = torch.randn(6)
    A = layer.comol_A["default"].weight
    B = layer.comol_B["default"].weight
    cores = layer.comol_cores["default"]
    Wg = layer.comol_router["default"].weight
    x_hat = A @ x
    g = torch.softmax(Wg @ x_hat, dim=0)
    M = sum(g[i] * cores[i] for i in range(4))
    expected = layer.base_layer(x) + (6.0 / 3) * (B @ (x_hat @ M))  # the authors' row form x̂ᵀ M
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def authors_forward(layer: CoMoLLayer, x: torch.Tensor, p: float) -> torch.Tensor:
    """``LinearMoCoreLoraLayer.forward`` of DCDmllm/CoMoL (src/mocorelora/layer.py), restated with this layer's
    weights: one ``nn.Dropout`` applied to x, to the per-token merged core and to the product."""
    dropout = nn.Dropout(p)
    A, B = layer.comol_A["default"], layer.comol_B["default"]
    router, cores = layer.comol_router["default"], layer.comol_cores["default"]
    lora_A_x = A(dropout(x))
    router_logits = torch.softmax(router(lora_A_x) if layer.core_routing else router(x), dim=-1)
    lora_core = torch.sum(
        torch.stack([core * router_logits[:, :, i].unsqueeze(-1).unsqueeze(-1) for i, core in enumerate(cores)]), 0
    )
    return layer.base_layer(x) + B(dropout(lora_A_x.unsqueeze(-2) @ dropout(lora_core)).squeeze(-2)) * layer.scaling


@pytest.mark.parametrize("core_routing", [True, False])
def test_training_mode_matches_the_authors_layer_draw_for_draw(core_routing):
    """Same seed, same weights: our dropout of x, of the merged core and of the product equals theirs exactly."""
    layer = make_layer(core_routing=core_routing, alpha=8.0, dropout=0.3)
    layer.train()
    x = torch.randn(2, 5, layer.in_features)
    torch.manual_seed(7)
    ours = layer(x)
    torch.manual_seed(7)
    theirs = authors_forward(layer, x, 0.3)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
    layer.eval()  # and in eval mode (no dropout) too
    torch.testing.assert_close(layer(x), authors_forward(layer.eval(), x, 0.0), rtol=1e-5, atol=1e-6)


def test_merged_core_and_product_are_dropped():
    """Dropout on x alone would leave x̂ᵀ M's zeros only where x̂ is zero; the authors also drop entries of the
    merged core and of the product: with x̂ held fixed, some output rank components vanish."""
    layer = make_layer(r=8, N=3, dropout=0.5)
    layer.train()
    x = torch.randn(64, layer.in_features)
    seen = {}
    layer.comol_B["default"].register_forward_hook(lambda mod, inp, out: seen.update(z=inp[0]))
    layer(x)
    zero_share = (seen["z"] == 0).float().mean().item()
    assert 0.35 < zero_share < 0.65  # about half of the product's entries dropped (p = 0.5)


def test_merged_equals_output_level_in_training_with_the_same_draws():
    layer = make_layer(alpha=8.0, dropout=0.3)
    layer.train()
    x = torch.randn(2, 5, layer.in_features)
    torch.manual_seed(3)
    merged = layer(x)
    layer.forward_mode = "output"
    torch.manual_seed(3)
    torch.testing.assert_close(layer(x), merged, rtol=1e-5, atol=1e-5)


def test_initialisation_follows_spec():
    r, n = 16, 256
    layer = make_layer(n=n, m=64, r=r, N=32, random_b=False)
    assert torch.count_nonzero(layer.comol_B["default"].weight) == 0
    a_bound = 1 / math.sqrt(n)  # kaiming-uniform a=√5 → U(±1/√fan_in)
    A = layer.comol_A["default"].weight
    assert A.abs().max() <= a_bound and A.abs().max() > 0.9 * a_bound
    cores = layer.comol_cores["default"]
    core_bound = 1 / math.sqrt(r)
    assert cores.abs().max() <= core_bound and cores.abs().max() > 0.9 * core_bound
    # not identity, not zeros, and the cores differ from each other
    assert not torch.allclose(cores[0], torch.eye(r)) and not torch.allclose(cores[0], cores[1])
    assert layer.comol_router["default"].bias is None


def test_core_routing_off_routes_on_x():
    on = make_layer(n=24, r=4, N=3, core_routing=True)
    off = make_layer(n=24, r=4, N=3, core_routing=False)
    assert on.comol_router["default"].in_features == 4
    assert off.comol_router["default"].in_features == 24
    seen = {}
    off.comol_router["default"].register_forward_hook(lambda mod, inp, out: seen.update(x=inp[0]))
    x = torch.randn(5, 24)
    off(x)
    torch.testing.assert_close(seen["x"], x)  # no dropout: the router sees x itself
    count = lambda layer: sum(p.numel() for p in layer.parameters() if p.requires_grad)  # noqa: E731
    assert count(off) - count(on) == 3 * (24 - 4)  # N·n instead of N·r


def test_scale_is_alpha_over_r():
    x = torch.randn(3, 24)
    deltas = []
    for alpha in (4.0, 8.0):
        layer = make_layer(r=4, alpha=alpha, seed=1)
        deltas.append(layer(x) - layer.base_layer(x))
    torch.testing.assert_close(deltas[1], 2 * deltas[0], rtol=1e-5, atol=1e-6)
    assert make_layer(r=4, alpha=None).scaling == 1.0  # default alpha = r


def test_dropout_only_in_training():
    layer = make_layer(dropout=0.5)
    x = torch.randn(64, 24)
    layer.eval()
    torch.testing.assert_close(layer(x), layer(x))
    layer.train()
    assert not torch.allclose(layer(x), layer(x))


def test_fp32_adapter_on_bf16_base():
    layer = make_layer()
    layer.base_layer.to(torch.bfloat16)
    x = torch.randn(2, 3, 24, dtype=torch.bfloat16)
    y = layer(x)
    assert y.dtype == torch.bfloat16
    assert layer.comol_A["default"].weight.dtype == torch.float32
    reference = layer.base_layer(x).float() + layer.delta(x.float()) * layer.scaling
    torch.testing.assert_close(y.float(), reference, rtol=2e-2, atol=2e-2)


def test_merge_is_refused_with_reason():
    with pytest.raises(NotImplementedError, match="depend on"):
        make_layer().merge()
