"""FlyLoRA: frozen sparse random A and balancing bias d are saved buffers, never trained; d moves after a training
micro-batch's backward (``comol.after_backward``), by the load of real tokens summed over ranks."""

from __future__ import annotations

import torch
from helpers import make_layer
from safetensors.torch import load_file
from tiny_models import tiny_model

from comol import adapter_layers, after_backward, inject_adapter, load_adapter, make_config, save_adapter


def buffers(layer) -> tuple[torch.Tensor, torch.Tensor]:
    return layer._get("flylora_A"), layer._get("flylora_d")


def test_A_is_sparse_random_with_n_k_over_r_per_row():
    layer = make_layer("flylora", n=512, m=8, r=16, top_k=4, random=False)
    A, d = buffers(layer)
    assert A.shape == (16, 512) and torch.all((A != 0).sum(1) == 512 * 4 // 16)
    assert abs(A[A != 0].std().item() - 1 / 16) < 0.1 / 16  # N(0, 1/r²)
    assert torch.count_nonzero(d) == 0
    assert torch.count_nonzero(layer._get("flylora_B").weight) == 0


def test_only_B_is_trainable_and_gets_gradients():
    layer = make_layer("flylora", r=8, top_k=2)
    trainable = [name for name, p in layer.named_parameters() if p.requires_grad]
    assert trainable == ["flylora_B.default.weight"]
    names = {name for name, _ in layer.named_buffers()}
    assert {"flylora_A.default", "flylora_d.default"} <= names
    layer(torch.randn(6, 12)).sum().backward()
    assert layer._get("flylora_B").weight.grad.abs().sum() > 0


def test_forward_keeps_the_top_k_of_Ax_plus_d():
    layer = make_layer("flylora", r=8, top_k=3, alpha=16.0)
    A, d = buffers(layer)
    d.copy_(torch.linspace(-1, 1, 8))
    layer.eval()
    x = torch.randn(5, 12)
    y = x @ A.T
    mask = torch.zeros_like(y).scatter_(-1, (y + d).topk(3, dim=-1).indices, 1.0)
    expected = layer.base_layer(x) + 2.0 * (y * mask) @ layer._get("flylora_B").weight.T
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_bias_moves_toward_balance_after_backward_of_a_training_forward():
    layer = make_layer("flylora", r=8, top_k=2, bias_update_rate=0.01)
    _, d = buffers(layer)
    x = torch.randn(64, 12)
    layer.eval()
    layer(x)
    after_backward(layer)
    assert torch.count_nonzero(d) == 0  # evaluation never moves d
    layer.train()
    chosen = (x @ buffers(layer)[0].T).topk(2, dim=-1).indices
    load = torch.bincount(chosen.flatten(), minlength=8).float()
    layer(x)
    assert torch.count_nonzero(d) == 0  # the forward only counts
    after_backward(layer)
    torch.testing.assert_close(d, 0.01 * torch.sign(load.mean() - load))
    assert (d[load > load.mean()] < 0).all() and (d[load < load.mean()] > 0).all()
    after_backward(layer)  # the counts are spent: a second call without a forward moves nothing
    torch.testing.assert_close(d, 0.01 * torch.sign(load.mean() - load))


def test_load_counts_skip_padding():
    """Right padding: what the pad positions hold must not move d once the attention mask is given."""
    model = tiny_model()
    inject_adapter(model, make_config("flylora", r=4, top_k=1, target_modules=["q_proj", "down_proj"], dropout=0.0))
    real = torch.tensor([[5, 17, 33, 9, 0, 0, 0, 0, 0], [7, 8, 21, 40, 3, 11, 60, 2, 4]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0, 0], [1] * 9])
    other_pads = real.clone()
    other_pads[0, 4:] = torch.tensor([90, 91, 92, 93, 94])
    model.train()
    biases = []
    for ids in (real, other_pads):
        for layer in adapter_layers(model).values():
            buffers(layer)[1].zero_()
        model(ids, attention_mask=mask)
        after_backward(model)
        biases.append(torch.cat([buffers(layer)[1].clone() for layer in adapter_layers(model).values()]))
    assert torch.count_nonzero(biases[0]) > 0
    assert torch.equal(biases[0], biases[1])


def test_top_k_adds_d_in_fp32_under_a_bf16_compute_dtype():
    """Under FSDP's bf16 param dtype the adapter computes in bf16; d's steps of 1e-3 on top of y ≈ 1 must still
    decide the top-k (the authors' fp32 bias promotes the sum), not vanish in bf16 rounding."""
    layer = make_layer("flylora", n=12, m=8, r=8, top_k=2, alpha=8.0, random=False)
    layer.base_layer.to(torch.bfloat16)
    layer._get("flylora_B").to(torch.bfloat16)  # what MixedPrecisionPolicy(param_dtype=bf16) does in forward
    A, d = buffers(layer)
    A.zero_()
    A[:, 0] = 1.0  # every component y_i = x_0 = 1 exactly: the tie is broken by d alone
    d.copy_(torch.arange(8) * 1e-4)  # 1 + 7e-4 rounds to 1 in bf16
    with torch.no_grad():
        layer._get("flylora_B").weight.copy_(torch.eye(8))
        layer.base_layer.weight.zero_()
        layer.base_layer.bias.zero_()
    layer.eval()
    x = torch.zeros(1, 12, dtype=torch.bfloat16)
    x[0, 0] = 1.0
    out = layer(x)  # B = I (8×8): the output shows which components were kept
    assert out.tolist() == [[0.0] * 6 + [1.0, 1.0]]


def test_buffers_are_saved_and_loaded_exactly(tmp_path):
    model = tiny_model()
    config = make_config("flylora", r=4, top_k=2, target_modules=["q_proj", "down_proj"])
    inject_adapter(model, config)
    model.train()
    model(torch.randint(0, 128, (2, 6)))  # one training micro-batch moves d
    after_backward(model)
    model.eval()
    save_adapter(model, tmp_path, config)
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert "base_model.model.model.layers.0.self_attn.q_proj.flylora_A" in saved
    assert "base_model.model.model.layers.0.self_attn.q_proj.flylora_d" in saved
    fresh, _ = load_adapter(tiny_model(seed=7), tmp_path)  # a different seed would draw a different A
    for (name, old), new in zip(adapter_layers(model).items(), adapter_layers(fresh).values(), strict=True):
        for a, b in zip(buffers(old), buffers(new), strict=True):
            assert torch.equal(a, b), name
        assert torch.count_nonzero(buffers(new)[1]) > 0
        assert not any(p.requires_grad for p in new._modules["flylora_A"].parameters())


def _rank_updates_bias(rank: int, store: str, inputs: torch.Tensor, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    layer = make_layer("flylora", r=8, top_k=2, bias_update_rate=0.01)  # same seed: same A on both ranks
    layer.train()
    collectives = []
    real_all_reduce = dist.all_reduce
    dist.all_reduce = lambda *args, **kwargs: collectives.append(args) or real_all_reduce(*args, **kwargs)
    layer(inputs[rank])
    in_forward = len(collectives)
    after_backward(layer)
    dist.all_reduce = real_all_reduce
    torch.save({"d": buffers(layer)[1], "in_forward": in_forward, "total": len(collectives)}, f"{out}.{rank}")
    dist.destroy_process_group()


def test_bias_follows_the_global_load_under_data_parallelism(tmp_path):
    """Two ranks see different tokens; d must move by their summed load and stay equal on both ranks."""
    import torch.multiprocessing as mp

    inputs = torch.randn(2, 40, 12, generator=torch.Generator().manual_seed(3))
    inputs[1] *= 3.0  # a different load on rank 1
    mp.spawn(_rank_updates_bias, args=(str(tmp_path / "store"), inputs, str(tmp_path / "d")), nprocs=2)
    saved = [torch.load(tmp_path / f"d.{r}") for r in range(2)]
    assert [(s["in_forward"], s["total"]) for s in saved] == [(0, 1), (0, 1)]  # no collective in the forward
    d0, d1 = (s["d"] for s in saved)
    A = make_layer("flylora", r=8, top_k=2, bias_update_rate=0.01)._get("flylora_A")
    loads = [torch.bincount((x @ A.T).topk(2, -1).indices.flatten(), minlength=8).float() for x in inputs]
    total = loads[0] + loads[1]
    assert torch.equal(d0, d1)
    torch.testing.assert_close(d0, 0.01 * torch.sign(total.mean() - total))
    assert not torch.equal(torch.sign(loads[0].mean() - loads[0]), torch.sign(total.mean() - total))  # control
