"""Injection: PEFT's target matching (names and regex), freezing, and the unmatched-target error."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_model

from comol import TargetNotFoundError, adapter_layers, inject_adapter, make_config
from comol.injection import matches_target


@pytest.mark.parametrize(
    ("targets", "name", "hit"),
    [
        (["q_proj"], "model.layers.0.self_attn.q_proj", True),
        (["q_proj"], "model.layers.0.self_attn.qq_proj", False),
        (["proj"], "model.layers.0.self_attn.q_proj", False),  # suffix match is on whole names
        (r".*\.1\.self_attn\.(q|v)_proj", "model.layers.1.self_attn.v_proj", True),
        (r".*\.1\.self_attn\.(q|v)_proj", "model.layers.0.self_attn.v_proj", False),
        (r"q_proj", "model.layers.0.self_attn.q_proj", False),  # a regex must match the full name
    ],
)
def test_matches_target_like_peft(targets, name, hit):
    assert matches_target(targets, name) is hit


def test_regex_targets_select_exact_modules():
    model = tiny_model()
    inject_adapter(model, make_config("comol", r=2, num_experts=2, target_modules=r".*\.1\.mlp\.(up|down)_proj"))
    assert sorted(adapter_layers(model)) == ["model.layers.1.mlp.down_proj", "model.layers.1.mlp.up_proj"]


def test_only_adapter_parameters_are_trainable():
    model = tiny_model()
    inject_adapter(model, make_config("comol", r=2, num_experts=2))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("comol_" in n for n in trainable)
    assert not model.model.embed_tokens.weight.requires_grad and not model.lm_head.weight.requires_grad


def test_unmatched_target_lists_linear_modules():
    model = tiny_model()
    with pytest.raises(TargetNotFoundError) as err:
        inject_adapter(model, make_config("comol", target_modules=["attention"]))
    message = str(err.value)
    assert "target_modules" in message
    for leaf in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head"):
        assert leaf in message
    assert all(p.requires_grad for p in model.parameters())  # nothing was frozen by the failed call


def test_any_leading_shape_through_a_model_layer():
    model = tiny_model()
    inject_adapter(model, make_config("comol", r=2, num_experts=3))
    layer = model.model.layers[0].self_attn.q_proj
    for shape in [(32,), (3, 32), (2, 3, 32), (2, 2, 2, 32)]:
        assert layer(torch.randn(shape)).shape == (*shape[:-1], 32)
