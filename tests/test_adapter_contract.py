"""The shared suite: every registered method through the same checks (PEFT-style table-driven tests)."""

from __future__ import annotations

import json

import pytest
import torch
from method_cases import CASES, MethodCase
from tiny_models import tiny_config, tiny_model

from comol import (
    METHODS,
    adapter_layers,
    aux_loss,
    cost_of,
    count_cost,
    inject_adapter,
    load_adapter,
    make_config,
    save_adapter,
)

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]
ids = [case.id for case in CASES]


def adapted(case: MethodCase, kind: str = "llama", seed: int = 0):
    model = tiny_model(kind, seed=seed)
    config = make_config(case.method, target_modules=TARGETS, **case.config)
    inject_adapter(model, config)
    return model, config


def randomize_adapters(model, seed: int = 1) -> None:
    """Give every trainable tensor random values, so zero-initialised B no longer hides the rest."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def tokens(batch=2, length=6, seed=0):
    return torch.randint(0, 128, (batch, length), generator=torch.Generator().manual_seed(seed))


def test_every_method_has_a_case():
    assert {case.method for case in CASES} == set(METHODS)


@pytest.mark.parametrize("case", CASES, ids=ids)
@pytest.mark.parametrize("kind", ["llama", "qwen3"])
def test_shapes_and_identity_at_init(case, kind):
    base = tiny_model(kind)
    model, _ = adapted(case, kind)
    x = tokens()
    with torch.no_grad():
        out, ref = model(x).logits, base(x).logits
    assert out.shape == ref.shape == (2, 6, 128)
    if case.identity_at_init:
        torch.testing.assert_close(out, ref, rtol=0, atol=0)
    assert len(adapter_layers(model)) == 2 * len(TARGETS)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_gradients_reach_exactly_the_trainable_parameters(case):
    model, _ = adapted(case)
    randomize_adapters(model)
    model.train()
    out = model(tokens(), labels=tokens())
    (out.loss + aux_loss(model)).backward()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "no trainable parameters"
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reached {name}"
        else:
            assert p.grad is None, f"frozen {name} got a gradient"
    # every trainable tensor is an adapter tensor, never a base weight
    assert all(".base_layer." not in n for n in trainable)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_save_load_round_trip_is_exact(case, tmp_path):
    model, config = adapted(case)
    randomize_adapters(model)
    save_adapter(model, tmp_path, config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == METHODS[case.method].peft_type
    fresh, loaded_config = load_adapter(tiny_model(), tmp_path)
    assert type(loaded_config) is type(config)
    x = tokens(seed=3)
    with torch.no_grad():
        assert torch.equal(model(x).logits, fresh(x).logits)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_param_count_equals_spec_formula(case):
    model, config = adapted(case)
    expected = 0
    for layer in adapter_layers(model).values():
        base = layer.get_base_layer()
        expected += case.params(base.in_features, base.out_features, config.to_dict())
    assert count_cost(model).trainable == expected
    # the meta-device count (what `comol params` reports) equals the real-model count
    config_dict = tiny_config().to_dict()
    assert cost_of(config_dict, config).trainable == expected


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_aux_loss_is_finite_and_differentiable(case):
    model, _ = adapted(case)
    model.train()
    model(tokens())
    loss = aux_loss(model)
    assert loss.ndim == 0 and torch.isfinite(loss)
    if loss.requires_grad:
        loss.backward()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_dropout_defaults_to_the_authors_0_1(method):
    """The CoMoL authors' train.py sets lora_dropout = 0.1 for every method they compare."""
    config = make_config(method)
    assert config.dropout == 0.1
    assert "0.1" in type(config).field_help()["dropout"]
    if method == "lora":
        assert config.to_peft().lora_dropout == 0.1


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_injected_into_an_eval_model_the_adapter_is_in_eval_mode(case):
    """A fresh module starts in training mode: injected into a model already in eval mode, the adapters must
    follow the model, or their dropout would randomise inference."""
    model = tiny_model().eval()
    inject_adapter(model, make_config(case.method, target_modules=TARGETS, **{**case.config, "dropout": 0.5}))
    randomize_adapters(model)
    assert not any(module.training for module in model.modules())
    x = tokens()
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, model(x).logits, rtol=0, atol=0)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_bf16_base_with_fp32_adapters(case):
    model = tiny_model().to(torch.bfloat16)
    config = make_config(case.method, target_modules=TARGETS, **case.config)
    inject_adapter(model, config)
    randomize_adapters(model)
    adapter_dtypes = {p.dtype for p in model.parameters() if p.requires_grad}
    assert adapter_dtypes == {torch.float32}
    with torch.no_grad():
        logits = model(tokens()).logits
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()


@pytest.mark.parametrize("method", sorted(METHODS))
def test_errors_name_the_setting_by_its_field_name(method):
    """One name per setting: a bad value is reported under the config field's own name, never a CLI word."""
    from comol import ConfigError

    settings = METHODS[method].config_cls.settings()
    bad = {"r": 0, "num_experts": 0, "alpha": -1.0, "dropout": 1.5}
    for name, value in bad.items():
        if name not in settings:
            continue
        with pytest.raises(ConfigError) as caught:
            make_config(method, **{name: value})
        assert caught.value.field == name
