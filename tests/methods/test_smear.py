"""SMEAR in a causal LM: one route per example from its prompt, causal everywhere, the same cached or not.

The masks reach the layers through the model call (a pre-hook that ``inject_adapter`` registers), so
the tests call the whole model the way training and generation do.
"""

from __future__ import annotations

import pytest
import torch
from helpers import expert_weights, make_layer
from tiny_models import tiny_model

from comol import adapter_layers, inject_adapter, make_config, takes_prompt_mask

TARGETS = ["q_proj", "v_proj", "down_proj"]
PAD = 0


def smear_model(seed: int = 0, **fields):
    model = tiny_model(seed=seed)
    inject_adapter(model, make_config("smear", r=4, num_experts=3, target_modules=TARGETS, **fields))
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random experts and a strong router, so that routes differ visibly
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model


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


def by_hand(layer, x: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """One token x through the base layer plus s · B̄ Ā x, merged with the route softmax(W_g pooled)."""
    p = torch.softmax(layer._get("smear_router")(pooled), dim=-1)
    As, Bs = expert_weights(layer)
    a_bar = sum(p[i] * As[i] for i in range(layer.num_experts))
    b_bar = sum(p[i] * Bs[i] for i in range(layer.num_experts))
    return layer.base_layer(x) + layer.scaling * (b_bar @ (a_bar @ x))


def test_each_position_routes_on_the_prompt_tokens_up_to_it():
    """Prompt positions route on their prompt prefix; every later position on the whole prompt (one route)."""
    layer = make_layer("smear", r=3, num_experts=4, alpha=6.0, dropout=0.0)
    x = torch.randn(2, 6, 12)
    layer.prompt_mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    out = layer(x)
    for e in range(2):
        prompt = layer.prompt_mask[e].bool()
        for t in range(6):
            pooled = x[e, : t + 1][prompt[: t + 1]].mean(0)
            torch.testing.assert_close(out[e, t], by_hand(layer, x[e, t], pooled), rtol=1e-5, atol=1e-5)


def test_cached_generation_equals_teacher_forcing():
    """Decode steps reuse the prefill's route: the teacher-forced logits of prompt + response are the logits
    cached generation produced, token by token (left-padded prompts of different lengths, batched)."""
    model = smear_model()
    assert takes_prompt_mask(model)
    prompts, new = [[5, 17, 33], [7, 8, 21, 40, 3]], 6
    ids, mask, _ = padded(prompts, "left")
    with torch.no_grad():
        out = model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=new,
            min_new_tokens=new,
            do_sample=False,
            pad_token_id=PAD,
            output_logits=True,
            return_dict_in_generate=True,
        )
    generated = out.sequences[:, ids.shape[1] :].tolist()
    cached = torch.stack(out.logits, dim=1)  # (2, new, vocab): the logits each decode step chose from
    full, full_mask, positions = padded([p + g for p, g in zip(prompts, generated, strict=True)], "right")
    prompt_mask = torch.tensor([[1] * len(p) + [0] * (full.shape[1] - len(p)) for p in prompts])
    with torch.no_grad():
        forced = model(full, attention_mask=full_mask, position_ids=positions, prompt_mask=prompt_mask).logits
    for row, prompt in enumerate(prompts):
        start = len(prompt) - 1  # the last prompt position predicts the first generated token
        diff = (forced[row, start : start + new] - cached[row]).abs().max().item()
        assert diff < 1e-4, f"row {row}: teacher-forced logits differ from cached generation by {diff:.2e}"


@pytest.mark.parametrize("prompt_known", [True, False], ids=["prompt-mask", "no-prompt-mask"])
def test_no_position_depends_on_a_later_token(prompt_known):
    """Loss on the whole sequence (every position carries loss): changing token j leaves every logit before j
    unchanged, with the prompt given (training batches) or not (a plain call: the prefix of real tokens)."""
    model = smear_model()
    seq, length, prompt_length = torch.tensor([[5, 17, 33, 9, 12, 40, 7, 8]]), 8, 4
    kwargs = {"prompt_mask": (torch.arange(length) < prompt_length).long()[None]} if prompt_known else {}
    with torch.no_grad():
        reference = model(seq, **kwargs).logits
        for j in range(1, length):
            changed = seq.clone()
            changed[0, j] = (changed[0, j] + 50) % 128
            logits = model(changed, **kwargs).logits
            torch.testing.assert_close(logits[:, :j], reference[:, :j], rtol=0, atol=1e-6, msg=f"token {j} leaked")
            assert not torch.allclose(logits[:, j], reference[:, j], atol=1e-4)  # control: j itself does change


def test_the_response_shares_the_prompt_route():
    """With the prompt known, the response tokens do not move the route: swapping the response's tokens for
    others changes the response's outputs only through the tokens themselves, never the merged experts."""
    model = smear_model()
    layers = list(adapter_layers(model).values())
    prompt = [5, 17, 33, 9]
    states = []
    for response in ([12, 40, 7], [90, 3, 64]):
        seq = torch.tensor([prompt + response])
        with torch.no_grad():
            model(seq, prompt_mask=torch.tensor([[1] * 4 + [0] * 3]))
        states.append([layer._prompt_state for layer in layers])
    for (sum_a, count_a), (sum_b, count_b) in zip(*states, strict=True):
        assert torch.equal(count_a, torch.tensor([4])) and torch.equal(count_a, count_b)
        torch.testing.assert_close(sum_a, sum_b, rtol=0, atol=0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padding_does_not_change_the_outputs(side):
    model = smear_model()
    short, long = [5, 17, 33, 9], [7, 8, 21, 40, 3, 11, 60]
    ids, mask, positions = padded([short, long], side)
    with torch.no_grad():
        batch = model(ids, attention_mask=mask, position_ids=positions).logits
        for row, seq in enumerate([short, long]):
            alone = model(torch.tensor([seq])).logits[0]
            torch.testing.assert_close(batch[row][mask[row].bool()], alone, rtol=1e-4, atol=1e-4)
        if side == "left":  # control: without its mask the left padding would count as prompt and leak in
            unmasked = model(ids, position_ids=positions).logits
            assert not torch.allclose(unmasked[0][mask[0].bool()], batch[0][mask[0].bool()], atol=1e-3)


def test_masks_are_cleared_after_inference_and_must_be_2d():
    model = smear_model()
    layers = list(adapter_layers(model).values())
    ids, mask, _ = padded([[1, 2], [3, 4, 5]], "right")
    with torch.no_grad():
        model(ids, attention_mask=mask, prompt_mask=mask)
    assert all(layer.attention_mask is None and layer.prompt_mask is None for layer in layers)
    with pytest.raises(ValueError, match="2-D"):
        model(ids, attention_mask=torch.ones(2, 1, 3, 3))
    with pytest.raises(ValueError, match="2-D"):
        model(ids, prompt_mask=torch.ones(2, 1, 3))


def test_a_decode_step_without_a_prefill_is_refused():
    from transformers import DynamicCache

    model = smear_model()
    ids = torch.tensor([[5, 17, 33]])
    with torch.no_grad():
        cache = DynamicCache(config=model.config)
        model(ids, past_key_values=cache, use_cache=True)
        fresh = smear_model()  # its layers never saw the prompt
        with pytest.raises(ValueError, match="holds no route"):
            fresh(torch.tensor([[9]]), past_key_values=cache, use_cache=True)


def test_gradient_checkpointing_sees_the_same_masks():
    """Checkpointing re-runs the layers during backward, after the call returned: the route must not change."""
    ids, mask, positions = padded([[5, 17, 33], [7, 8, 21, 40, 3]], "left")
    labels = ids.masked_fill(mask == 0, -100)
    prompt_mask = torch.tensor([[0, 0, 1, 1, 0], [1, 1, 1, 0, 0]])
    grads = []
    for checkpointing in (False, True):
        model = smear_model(dropout=0.0)
        if checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        out = model(ids, attention_mask=mask, position_ids=positions, labels=labels, prompt_mask=prompt_mask)
        out.loss.backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.requires_grad})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-5, atol=1e-6, msg=name)
