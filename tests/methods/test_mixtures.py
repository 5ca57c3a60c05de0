"""MoLoRA, HydraLoRA and AdaMoLE against their spec formulas, computed expert by expert."""

from __future__ import annotations

import pytest
import torch
from helpers import expert_weights, make_layer

from comol.methods.moe import load_balancing_loss


def by_hand(layer, x: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """s · Σ_i g_i B_i A_i x, one expert at a time."""
    As, Bs = expert_weights(layer)
    delta = sum(gates[..., i : i + 1] * (x @ As[i].T @ Bs[i].T) for i in range(layer.num_experts))
    return layer.base_layer(x) + layer.scaling * delta


@pytest.mark.parametrize("method", ["molora", "hydralora"])
@pytest.mark.parametrize("shape", [(5,), (2, 5), (2, 3, 4)])
def test_soft_mixtures_match_the_formula(method, shape):
    layer = make_layer(method, r=3, num_experts=4, alpha=6.0)
    x = torch.randn(*shape, 12)
    gates = torch.softmax(x @ layer._get(f"{method}_router").weight.T, dim=-1)
    torch.testing.assert_close(layer(x), by_hand(layer, x, gates), rtol=1e-5, atol=1e-5)


def test_hydralora_shares_one_A():
    layer = make_layer("hydralora", r=3, num_experts=4)
    assert layer.A.weight.shape == (3, 12) and layer.B.weight.shape == (10, 4 * 3)


def test_adamole_threshold_and_renormalised_weights():
    layer = make_layer("adamole", r=3, num_experts=4)
    with torch.no_grad():  # spread the router so that some experts fall under the threshold
        layer._get("adamole_router").weight.mul_(4)
    x = torch.randn(64, 12)
    p = torch.softmax(x @ layer._get("adamole_router").weight.T, dim=-1)
    head = layer._get("adamole_threshold")
    tau = torch.sigmoid(x @ head.weight.T + head.bias) / 4
    w = (p - tau) * (p >= tau)
    w = w / w.sum(-1, keepdim=True)
    torch.testing.assert_close(layer(x), by_hand(layer, x, w), rtol=1e-5, atol=1e-5)
    adapted, active, weights = layer.gates(x)
    torch.testing.assert_close(adapted, p - tau)
    assert active.any(-1).all(), "every token keeps at least one expert (τ < 1/N ≤ max p)"
    assert (~active).any(), "the test needs some experts below the threshold"
    assert torch.all(weights[~active] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(64))
    assert head.weight.shape == (1, 12) and head.bias.shape == (1,)  # n + 1 parameters


def test_adamole_balancing_loss_is_the_authors():
    """As DCDmllm/CoMoL src/adamole/layer.py: N · Σ f_i · mean(p_i − τ), f_i the share of tokens keeping i."""
    layer = make_layer("adamole", r=3, num_experts=4, aux_loss_coef=0.01)
    x = torch.randn(64, 12)
    layer(x)
    p = torch.softmax(x @ layer._get("adamole_router").weight.T, dim=-1)
    head = layer._get("adamole_threshold")
    tau = torch.sigmoid(x @ head.weight.T + head.bias) / 4
    fraction = (p >= tau).float().sum(0) / 64
    expected = 0.01 * 4 * (fraction * (p - tau).mean(0)).sum()
    torch.testing.assert_close(layer.aux_loss(), expected)


def test_adamole_gradients_reach_the_threshold_and_aux_loss():
    layer = make_layer("adamole", r=3, num_experts=4, aux_loss_coef=0.5)
    out = layer(torch.randn(32, 12))
    aux = layer.aux_loss()
    assert aux is not None and aux.requires_grad
    aux.backward(retain_graph=True)  # the load-balancing loss reaches the router
    assert layer._get("adamole_router").weight.grad.abs().sum() > 0
    out.sum().backward()  # the output reaches the threshold head through (p_i − τ)
    assert layer._get("adamole_threshold").weight.grad.abs().sum() > 0


def test_load_balancing_loss_is_k_when_balanced_and_grows_with_imbalance():
    uniform = torch.full((8, 4), 0.25)
    balanced = torch.eye(4).repeat(2, 1).bool()  # one expert per token, each expert equally often
    assert load_balancing_loss(uniform, balanced).item() == pytest.approx(1.0)
    top2 = (torch.eye(4) + torch.eye(4).roll(1, 0)).repeat(2, 1).bool()  # two experts per token, balanced
    assert load_balancing_loss(uniform, top2).item() == pytest.approx(2.0)
    skewed = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).repeat(8, 1)
    all_first = torch.zeros(8, 4, dtype=torch.bool)
    all_first[:, 0] = True
    assert load_balancing_loss(skewed, all_first).item() == pytest.approx(4 * 0.7)
