"""Weights read once: the rank-0 broadcast load (the default with several workers) against the former path, where
every rank reads the whole checkpoint and shards its own copy.

The broadcast path builds the model on the meta device, shards it, and fills the shards from rank 0's copy: the
result must be the former path's model exactly (base, adapters, non-persistent rotary buffers, tied embeddings),
for every method, and on two gloo processes every rank must hold the same adapter and train the same losses.
The tiny model ties its LM head to its embeddings, as SmolLM2 does.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tiny_models import save_tiny_model
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from comol import METHODS
from orchestration.training.config import TrainConfig
from orchestration.training.setup import EVERY_RANK, RANK0_BROADCAST, build_model, build_optimizer
from orchestration.training.step import train_step

STEPS = 4
FULL = StateDictOptions(full_state_dict=True)  # gathered on every rank (no cpu_offload: not rank 0 only)


@pytest.fixture(scope="module")
def tied_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-tied"), tie_word_embeddings=True)


def config_for(model_dir: Path, method: str = "comol", resources: dict | None = None, **training) -> TrainConfig:
    adapter = {"r": 4, "target_modules": ["q_proj", "v_proj", "o_proj", "down_proj"]}
    if method not in ("lora", "flylora"):
        adapter["num_experts"] = 2
    return TrainConfig.from_dict(
        {
            "model": str(model_dir),
            "method": method,
            "adapter": adapter,
            "data": {"size": 16},
            "training": {"seed": 5, "lr": 3e-2, "warmup_steps": 0, "batch_size": 4, **training},
            "resources": resources or {},
        }
    )


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Collective: every rank's full view of the model (state dict plus non-persistent buffers), copied: a gathered
    tensor that needs no communication (HSDP groups of one) is the live parameter, which training then moves."""
    state = get_model_state_dict(model, options=FULL)
    state |= {f"buffer:{name}": b for name, b in model.named_buffers() if name not in state}
    return {key: value.detach().clone() for key, value in state.items()}


def differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    assert a.keys() == b.keys()
    return [key for key in a if a[key].dtype != b[key].dtype or not torch.equal(a[key], b[key])]


def poison_uninitialised_memory() -> None:
    """``torch.empty`` (hence ``to_empty``) fills floats with NaN: a shard the broadcast leaves unfilled cannot
    pass for a filled one by reusing the memory of a model built just before."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True


@pytest.fixture
def one_process_group():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    poison_uninitialised_memory()
    yield
    torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    dist.destroy_process_group()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("method", sorted(METHODS))
def test_broadcast_load_builds_the_same_model_as_loading_in_place(tied_model_dir, one_process_group, method, precision):
    """Meta build + adapter injection on meta + to_empty + fill from rank 0 = loading the checkpoint in place."""
    config = config_for(tied_model_dir, method, precision=precision)
    built = {}
    ids = None
    for load in (EVERY_RANK, RANK0_BROADCAST):
        model = build_model(config, torch.device("cpu"), world_size=1, load=load).model
        assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied after sharding
        if ids is None:
            vocab = model.config.vocab_size
            ids = torch.randint(0, vocab, (2, 11), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            logits = model.eval()(input_ids=ids).logits
        requires_grad = {name: p.requires_grad for name, p in model.named_parameters()}
        built[load] = snapshot(model), logits, requires_grad
    (in_place, in_place_logits, in_place_grad), (broadcast, broadcast_logits, broadcast_grad) = built.values()
    assert any(key.startswith("buffer:") for key in in_place)  # rotary inv_freq, outside every state dict
    assert differing(in_place, broadcast) == []
    assert in_place_grad == broadcast_grad and any(in_place_grad.values())
    adapter_dtypes = {in_place[name].dtype for name, grad in in_place_grad.items() if grad}
    base_dtype = in_place["model.embed_tokens.weight"].dtype
    assert adapter_dtypes == {torch.float32}
    assert base_dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    assert torch.equal(in_place_logits, broadcast_logits)


def test_unknown_load_strategy_is_refused(tied_model_dir, one_process_group):
    with pytest.raises(ValueError, match="every_rank"):
        build_model(config_for(tied_model_dir), torch.device("cpu"), world_size=1, load="lazy")


# --- two gloo processes --------------------------------------------------------------------------------------


def _batches(rank: int, vocab: int) -> list[dict[str, torch.Tensor]]:
    """This rank's micro-batch, the same every step (so the loss falls): 2 examples of random tokens, the last 3 of
    one padded."""
    generator = torch.Generator().manual_seed(rank)
    ids = torch.randint(2, vocab, (2, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, -3:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    return [{"input_ids": ids, "attention_mask": mask, "labels": labels}]


def _rank(rank: int, model_dir: str, store: str, out: str) -> None:
    """One worker: each load path (and HSDP groups of one), its state on this rank and STEPS training losses."""
    torch.set_num_threads(1)
    poison_uninitialised_memory()
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        results = {}
        for name, load, shard_size in (
            ("every_rank", EVERY_RANK, None),
            ("broadcast", RANK0_BROADCAST, None),
            ("broadcast_hsdp", RANK0_BROADCAST, 1),
        ):
            config = config_for(Path(model_dir), resources={"num_workers": 2, "shard_size": shard_size})
            built = build_model(config, torch.device("cpu"), world_size=2, load=load)
            state = snapshot(built.model)
            optimizer, scheduler = build_optimizer(config, built.params, STEPS)
            vocab = built.model.config.vocab_size
            losses = []
            for step in range(1, STEPS + 1):
                # Dropout draws from (step, rank), as the training loop seeds them: the load path must not matter.
                torch.manual_seed(1000 * step + rank)
                stats = train_step(
                    built.model,
                    optimizer,
                    scheduler,
                    _batches(rank, vocab),
                    built.params,
                    world_size=2,
                    max_grad_norm=1.0,
                    device=torch.device("cpu"),
                )
                losses.append(stats.loss)
            results[name] = {"state": state, "losses": losses}
        torch.save(results, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_hold_the_same_model_and_train_the_same_losses_as_every_rank_loading(tied_model_dir, tmp_path):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_rank, args=(str(tied_model_dir), str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    reference = ranks[0]["every_rank"]
    for rank, results in enumerate(ranks):
        for name, result in results.items():
            # Every rank holds rank 0's full model (adapter init included), identical to the former path's.
            assert differing(reference["state"], result["state"]) == [], (rank, name)
            print(f"rank {rank} {name}: losses {result['losses']}")
            assert result["losses"] == pytest.approx(reference["losses"], abs=1e-6), (rank, name)
    losses = reference["losses"]
    assert losses[-1] < losses[0] - 0.05, losses  # the steps really trained


def _evaluation_rank(rank: int, model_dir: str, adapter_dir: str, store: str, out: str) -> None:
    """One worker of the post-training evaluation: counts its checkpoint reads, returns the model it evaluated."""
    from orchestration.training import hooks

    torch.set_num_threads(1)
    poison_uninitialised_memory()
    reads = []
    load_model = hooks.load_model
    hooks.load_model = lambda *args, **kwargs: reads.append(args) or load_model(*args, **kwargs)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        evaluation = hooks.HookEvaluation(hook=f"{__name__}:evaluated_state", options={"out": out})
        folder = Path(adapter_dir) if rank == 0 else None  # only rank 0 has the adapter, as after training
        hooks.run_post_training_hook(
            evaluation, folder, model_dir, None, rank=rank, world_size=2, device=torch.device("cpu"), bf16=False
        )
        torch.save({"reads": len(reads)}, Path(out) / f"reads{rank}.pt")
    finally:
        dist.destroy_process_group()


def evaluated_state(model, tokenizer, options, *, rank, world_size, device) -> dict[str, float]:
    """The test's evaluation hook: saves the model it is given (state, buffers, tying, logits) for comparison."""
    ids = torch.arange(2, 14).unsqueeze(0)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state |= {f"buffer:{name}": b.clone() for name, b in model.named_buffers() if name not in state}
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    torch.save({"state": state, "logits": logits, "tied": tied}, Path(options["out"]) / f"model{rank}.pt")
    return {"logit_sum": float(logits.sum())}


@pytest.mark.slow
def test_evaluation_reads_the_checkpoint_once_and_every_rank_evaluates_the_same_model(tied_model_dir, tmp_path):
    """After training every rank evaluates a whole copy of base + adapter; rank 0 alone reads the checkpoint."""
    from comol import inject_adapter, load_adapter, save_adapter
    from orchestration.models import load_model

    config = config_for(tied_model_dir)
    trained = inject_adapter(load_model(str(tied_model_dir)), config.adapter_config())
    with torch.no_grad():
        for p in trained.parameters():
            if p.requires_grad:
                p.normal_(0, 0.2)  # a trained-looking adapter: B is not zero, so it changes the logits
    adapter_dir = tmp_path / "adapter"
    save_adapter(trained, adapter_dir, config.adapter_config())
    reference, _ = load_adapter(load_model(str(tied_model_dir)), adapter_dir)
    reference.eval()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    args = (str(tied_model_dir), str(adapter_dir), str(tmp_path / "store"), str(tmp_path))
    mp.spawn(_evaluation_rank, args=args, nprocs=2, join=True)
    assert [torch.load(tmp_path / f"reads{r}.pt")["reads"] for r in (0, 1)] == [1, 0]
    with torch.no_grad():
        logits = reference(input_ids=torch.arange(2, 14).unsqueeze(0)).logits
    state = {k: v.detach() for k, v in reference.state_dict().items()}
    state |= {f"buffer:{name}": b for name, b in reference.named_buffers() if name not in state}
    for rank in (0, 1):
        seen = torch.load(tmp_path / f"model{rank}.pt", weights_only=True)
        assert seen["tied"], rank  # SmolLM2 ties its LM head to its embeddings: the copy must too
        assert differing(state, seen["state"]) == [], rank
        torch.testing.assert_close(seen["logits"], logits, rtol=0, atol=0)
