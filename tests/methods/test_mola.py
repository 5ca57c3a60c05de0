"""MoLA: exactly top-k experts per token (renormalised), the Switch loss, and the per-depth expert schedule."""

from __future__ import annotations

import pytest
import torch
from helpers import expert_weights, make_layer
from tiny_models import tiny_model

from comol import ConfigError, adapter_layers, aux_loss, cost_of, inject_adapter, make_config
from comol.methods.mola import MoLAConfig
from comol.model_configs import load_model_config_dict


def test_top2_of_softmax_renormalised_and_nothing_else():
    layer = make_layer("mola", r=3, num_experts=5)
    x = torch.randn(2, 7, 12)
    probs = torch.softmax(x @ layer._get("mola_router").weight.T, dim=-1)
    top_p, top_i = probs.topk(2, dim=-1)
    gates = torch.zeros_like(probs).scatter_(-1, top_i, top_p / top_p.sum(-1, keepdim=True))
    assert torch.all((gates > 0).sum(-1) == 2)
    As, Bs = expert_weights(layer)
    delta = sum(gates[..., i : i + 1] * (x @ As[i].T @ Bs[i].T) for i in range(5))
    torch.testing.assert_close(layer(x), layer.base_layer(x) + layer.scaling * delta, rtol=1e-5, atol=1e-5)


def test_experts_a_token_did_not_choose_do_not_touch_it():
    layer = make_layer("mola", r=3, num_experts=5)
    x = torch.randn(1, 12)
    _, top_i, _ = layer.gates(x)
    unused = sorted(set(range(5)) - set(top_i.flatten().tolist()))
    before = layer(x)
    with torch.no_grad():
        for i in unused:
            layer.B.weight[:, i * 3 : (i + 1) * 3] += 100.0
    torch.testing.assert_close(layer(x), before, rtol=0, atol=0)
    layer(x).sum().backward()
    grad = layer.B.weight.grad
    for i in range(5):
        assert (grad[:, i * 3 : (i + 1) * 3].abs().sum() > 0) == (i not in unused)


def test_switch_loss_is_the_authors_n_sum_f_p_with_f_summing_to_k():
    """As DCDmllm/CoMoL src/mole/layer.py: f_i = (tokens that picked expert i) / tokens, so Σ f_i = k = 2."""
    layer = make_layer("mola", r=3, num_experts=4, aux_loss_coef=0.01)
    x = torch.randn(50, 12)
    layer(x)
    probs, top_i, _ = layer.gates(x)
    fraction = torch.bincount(top_i.flatten(), minlength=4).float() / 50
    assert fraction.sum().item() == pytest.approx(2.0)
    expected = 0.01 * 4 * (fraction * probs.mean(0)).sum()
    torch.testing.assert_close(layer.aux_loss(), expected)
    layer.aux_loss().backward()  # differentiable through P_i: reaches the router
    assert layer._get("mola_router").weight.grad.abs().sum() > 0


def test_model_aux_loss_sums_the_layers():
    model = tiny_model()
    inject_adapter(model, make_config("mola", r=4, num_experts=3, target_modules=["q_proj", "v_proj"]))
    model(torch.randint(0, 128, (2, 5)))
    per_layer = [layer.aux_loss() for layer in adapter_layers(model).values()]
    assert len(per_layer) == 4
    torch.testing.assert_close(aux_loss(model), torch.stack(per_layer).sum())


@pytest.mark.parametrize(("num_layers", "expected"), [(4, [2, 4, 6, 8]), (8, [2, 2, 4, 4, 6, 6, 8, 8])])
def test_schedule_by_depth_quarter(num_layers, expected):
    model = tiny_model(num_hidden_layers=num_layers)
    config = make_config("mola", r=4, expert_schedule="2,4,6,8", target_modules=["q_proj", "down_proj"])
    inject_adapter(model, config)
    for depth, n_experts in enumerate(expected):
        for leaf in ("self_attn.q_proj", "mlp.down_proj"):
            layer = model.get_submodule(f"model.layers.{depth}.{leaf}")
            assert layer.num_experts == n_experts
            n, m, r = layer.in_features, layer.out_features, 4
            count = sum(p.numel() for p in layer.parameters() if p.requires_grad)
            assert count == n_experts * r * (n + m) + n_experts * n


def test_schedule_on_qwen3_8b_quarters():
    """36 layers → quarters of 9; the count equals Σ over layers of the spec's per-layer formula."""
    model_config = load_model_config_dict("qwen3-8b")
    config = make_config("mola", r=16, expert_schedule=[2, 4, 6, 8])
    shapes = {"q_proj": (4096, 4096), "k_proj": (4096, 1024), "v_proj": (4096, 1024), "o_proj": (4096, 4096)}
    shapes["down_proj"] = (12288, 4096)
    expected = sum(
        k * 16 * (n + m) + k * n for depth in range(36) for k in [[2, 4, 6, 8][depth // 9]] for n, m in shapes.values()
    )
    assert cost_of(model_config, config).trainable == expected


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"num_experts": 4, "expert_schedule": "2,4"}, "num_experts"),
        ({"expert_schedule": "2,x"}, "expert_schedule"),
        ({"expert_schedule": "2,0"}, "expert_schedule"),
        ({"expert_schedule": ""}, "expert_schedule"),
        ({"num_experts": 4, "top_k": 5}, "top_k"),
        ({"expert_schedule": "1,4"}, "top_k"),
        ({"aux_loss_coef": -1.0}, "aux_loss_coef"),
    ],
)
def test_bad_settings_are_rejected(fields, field):
    with pytest.raises(ConfigError) as err:
        MoLAConfig(**fields)
    assert err.value.field == field


def test_saved_config_keeps_the_schedule():
    config = MoLAConfig(expert_schedule="2,4,6,8")
    assert config.to_dict()["expert_schedule"] == [2, 4, 6, 8] and config.num_experts is None
    assert MoLAConfig.from_dict(config.to_dict()) == config
    assert MoLAConfig().num_experts == 8


@pytest.mark.parametrize("method", ["mola", "adamole"])
def test_balancing_loss_counts_real_tokens_only(method):
    """Right padding: what the pad positions hold must not move the balancing loss once the mask is given."""
    model = tiny_model()
    config = make_config(method, r=4, num_experts=3, aux_loss_coef=1.0, target_modules=["q_proj", "down_proj"])
    inject_adapter(model, config)
    real = torch.tensor([[5, 17, 33, 9, 0, 0, 0], [7, 8, 21, 40, 3, 11, 60]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0], [1] * 7])
    other_pads = real.clone()
    other_pads[0, 4:] = torch.tensor([90, 91, 92])
    model.train()
    losses = {}
    for name, ids in (("pad0", real), ("pad9x", other_pads)):
        model(ids, attention_mask=mask)
        losses[name, "masked"] = aux_loss(model).detach()
        model(ids)
        losses[name, "unmasked"] = aux_loss(model).detach()
    torch.testing.assert_close(losses["pad0", "masked"], losses["pad9x", "masked"], rtol=1e-6, atol=0)
    assert not torch.allclose(losses["pad0", "masked"], losses["pad0", "unmasked"], rtol=1e-4, atol=0)
    assert not torch.allclose(losses["pad0", "unmasked"], losses["pad9x", "unmasked"], rtol=1e-4, atol=0)
    # cached generation (a mask longer than the current tokens) still runs
    with torch.no_grad():
        out = model.eval().generate(real, attention_mask=mask, max_new_tokens=2, do_sample=False, pad_token_id=0)
    assert out.shape == (2, 9)
