"""SMEAR: one route per example from its real tokens only; padding (left or right) must not change it.

The mask reaches the layers through the model call (a pre-hook that ``inject_adapter`` registers), so
the tests call the whole model the way training and generation do.
"""

from __future__ import annotations

import pytest
import torch
from helpers import expert_weights, make_layer
from tiny_models import tiny_model

from comol import adapter_layers, inject_adapter, make_config

TARGETS = ["q_proj", "v_proj", "down_proj"]
PAD = 0


def smear_model(seed: int = 0):
    model = tiny_model(seed=seed)
    inject_adapter(model, make_config("smear", r=4, num_experts=3, target_modules=TARGETS))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random experts and a strong router, so that routes differ visibly
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model


def record_routes(model) -> list[torch.Tensor]:
    """Every SMEAR router's output (per-example logits), in call order."""
    routes: list[torch.Tensor] = []
    for layer in adapter_layers(model).values():
        layer._get("smear_router").register_forward_hook(lambda mod, inp, out: routes.append(out.detach()))
    return routes


def test_layer_merges_experts_in_parameter_space():
    layer = make_layer("smear", r=3, num_experts=4, alpha=6.0)
    x = torch.randn(2, 5, 12)
    As, Bs = expert_weights(layer)
    for e in range(2):
        p = torch.softmax(layer._get("smear_router")(x[e].mean(0)), dim=-1)
        a_bar = sum(p[i] * As[i] for i in range(4))
        b_bar = sum(p[i] * Bs[i] for i in range(4))
        expected = layer.base_layer(x[e]) + 2.0 * x[e] @ a_bar.T @ b_bar.T
        torch.testing.assert_close(layer(x)[e], expected, rtol=1e-5, atol=1e-5)


def padded(ids: list[list[int]], side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask and position_ids for a batch padded on ``side``."""
    width = max(map(len, ids))
    rows, masks = [], []
    for seq in ids:
        pad = [PAD] * (width - len(seq))
        rows.append(pad + seq if side == "left" else seq + pad)
        mask = [0] * len(pad) + [1] * len(seq) if side == "left" else [1] * len(seq) + [0] * len(pad)
        masks.append(mask)
    mask = torch.tensor(masks)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    return torch.tensor(rows), mask, positions


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_does_not_change_the_route(side):
    model = smear_model()
    routes = record_routes(model)
    short, long = [5, 17, 33, 9], [7, 8, 21, 40, 3, 11, 60]
    ids, mask, positions = padded([short, long], side)
    with torch.no_grad():
        batch = model(ids, attention_mask=mask, position_ids=positions).logits
        batch_routes = list(routes)
        for row, seq in enumerate([short, long]):
            routes.clear()
            alone = model(torch.tensor([seq])).logits[0]
            real = mask[row].bool()
            torch.testing.assert_close(batch[row][real], alone, rtol=1e-4, atol=1e-4)
            for in_batch, single in zip(batch_routes, routes, strict=True):
                torch.testing.assert_close(in_batch[row], single[0], rtol=1e-5, atol=1e-5)
        # control: the same padded batch without its mask routes differently (padding would leak)
        routes.clear()
        model(ids, position_ids=positions)
        assert not torch.allclose(routes[0][0], batch_routes[0][0], atol=1e-3)


def test_mask_is_cleared_after_inference_and_rejects_4d_masks():
    model = smear_model()
    layers = list(adapter_layers(model).values())
    ids, mask, _ = padded([[1, 2], [3, 4, 5]], "right")
    with torch.no_grad():
        model(ids, attention_mask=mask)
    assert all(layer.attention_mask is None for layer in layers)
    with pytest.raises(ValueError, match="2-D"):
        model(ids, attention_mask=torch.ones(2, 1, 3, 3))


def test_gradient_checkpointing_sees_the_same_mask():
    """Checkpointing re-runs the layers during backward, after the call returned: the route must not change."""
    ids, mask, positions = padded([[5, 17, 33], [7, 8, 21, 40, 3]], "left")
    labels = ids.masked_fill(mask == 0, -100)
    grads = []
    for checkpointing in (False, True):
        model = smear_model()
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        model(ids, attention_mask=mask, position_ids=positions, labels=labels).loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_cached_generation_runs_with_a_growing_mask():
    model = smear_model()
    ids, mask, _ = padded([[5, 17, 33], [7, 8, 21, 40, 3]], "left")
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, max_new_tokens=3, do_sample=False, pad_token_id=PAD)
    assert out.shape == (2, 8)
