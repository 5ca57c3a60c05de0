"""The training step in-process (FSDP2 on a 1-process gloo group, no Ray): accumulation and checkpoints are exact."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from tiny_models import save_tiny_model

from orchestration.data.batching import collate, step_micro_batches
from orchestration.data.prompts import recorded_template
from orchestration.models import load_tokenizer
from orchestration.training.checkpointing import (
    ADAPTER_DIR,
    gather_adapter,
    gather_optimizer,
    read_checkpoint,
    write_checkpoint,
)
from orchestration.training.config import TrainConfig
from orchestration.training.setup import build_data, build_model, build_optimizer
from orchestration.training.step import train_step

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def process_group(tmp_path_factory):
    store = tmp_path_factory.mktemp("pg") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny"))


def setup(model_dir, accumulation: int):
    config = TrainConfig.from_dict(
        {
            "model": str(model_dir),
            "adapter": {"r": 4, "num_experts": 2, "dropout": 0.0},  # exact comparisons need no random masks
            "data": {"source": "arithmetic", "size": 64, "cutoff_len": 320, "labels": "response"},
            "training": {"batch_size": 8, "gradient_accumulation": accumulation, "lr": 1e-2, "max_steps": 6},
        }
    )
    tokenizer = load_tokenizer(config.model)
    data = build_data(config, tokenizer)
    built = build_model(config, CPU, world_size=1)
    optimizer, scheduler = build_optimizer(config, built.params, data.total_steps)
    return config, tokenizer, data, built, optimizer, scheduler


def run_steps(parts, steps) -> list[float]:
    config, tokenizer, data, built, optimizer, scheduler = parts
    losses = []
    for step in steps:
        indices = step_micro_batches(
            len(data.train),
            step,
            batch_size=8,
            accumulation=config.training.gradient_accumulation,
            rank=0,
            world_size=1,
            seed=0,
        )
        batches = [collate(data.train, i, tokenizer.pad_token_id) for i in indices]
        stats = train_step(
            built.model, optimizer, scheduler, batches, built.params, world_size=1, max_grad_norm=1.0, device=CPU
        )
        assert stats.finite
        losses.append(stats.loss)
    return losses


def adapter(parts) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in gather_adapter(parts[3].model).items()}


def test_gradient_accumulation_matches_one_big_micro_batch(process_group, model_dir):
    whole, halves = setup(model_dir, 1), setup(model_dir, 2)
    losses_whole, losses_halves = run_steps(whole, range(1, 5)), run_steps(halves, range(1, 5))
    assert losses_whole == pytest.approx(losses_halves, abs=1e-5)
    a, b = adapter(whole), adapter(halves)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_a_checkpoint_restores_adapter_optimizer_scheduler_and_step(process_group, model_dir, tmp_path):
    straight = setup(model_dir, 1)
    run_steps(straight, range(1, 7))
    interrupted = setup(model_dir, 1)
    run_steps(interrupted, range(1, 4))
    _, _, _, built, optimizer, scheduler = interrupted
    write_checkpoint(
        tmp_path,
        built.model,
        built.adapter_config,
        gather_adapter(built.model),
        gather_optimizer(built.model, optimizer),
        scheduler.state_dict(),
        step=3,
        prompt_template="short",
    )
    assert recorded_template(tmp_path / ADAPTER_DIR) == "short"  # evaluation and generation prompt as training did
    resumed = setup(model_dir, 1)  # a fresh worker: new model, optimizer and schedule
    _, _, _, built2, optimizer2, scheduler2 = resumed
    assert read_checkpoint(tmp_path, built2.model, optimizer2, scheduler2) == 3
    assert scheduler2.last_epoch == 3
    run_steps(resumed, range(4, 7))
    a, b = adapter(straight), adapter(resumed)
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


@pytest.mark.parametrize("labels", ["response", "all"])
def test_loss_on_kept_logits_equals_the_full_logits_loss(model_dir, labels):
    """Logits only where the next token is a label: the same loss and gradients as projecting every position."""
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from comol import inject_adapter, make_config
    from orchestration.data.records import load_records
    from orchestration.data.tokenize import IGNORE_INDEX, tokenize_records
    from orchestration.training.step import token_loss_sum

    tokenizer = load_tokenizer(str(model_dir))
    data = tokenize_records(load_records("arithmetic", 6, seed=2), tokenizer, cutoff_len=320, labels=labels)
    batch = collate(data, list(range(6)), tokenizer.pad_token_id)
    model = inject_adapter(AutoModelForCausalLM.from_pretrained(model_dir), make_config("comol", r=4, num_experts=2))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)  # B is zero at init: give the adapter gradients something to differ on
    total, count = token_loss_sum(model, batch)
    total.backward()
    kept = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.zero_grad()
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["labels"][:, 1:]
    reference = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), reduction="sum")
    reference.backward()
    assert int(count) == int((targets != IGNORE_INDEX).sum()) > 0
    torch.testing.assert_close(total, reference, rtol=1e-5, atol=1e-4)
    for name, grad in kept.items():
        torch.testing.assert_close(grad, dict(model.named_parameters())[name].grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.parametrize("template", ["short", None])
def test_evaluation_prompts_as_the_adapter_was_trained(process_group, model_dir, tmp_path, template):
    """The post-training hook gets the template recorded in the adapter folder (Alpaca when it records none), so
    held-out problems are asked exactly as training asked them."""
    import json

    from orchestration.data.arithmetic import arithmetic_test_records
    from orchestration.data.prompts import TEMPLATE_FILE, build_prompt
    from orchestration.training.config import BenchmarkEvaluation
    from orchestration.training.hooks import run_post_training_hook

    _, tokenizer, _, built, optimizer, scheduler = setup(model_dir, 1)
    checkpoint = tmp_path / "checkpoint"
    state = gather_adapter(built.model), gather_optimizer(built.model, optimizer), scheduler.state_dict()
    write_checkpoint(checkpoint, built.model, built.adapter_config, *state, step=0, prompt_template=template or "short")
    if template is None:  # an adapter saved before templates were recorded
        (checkpoint / ADAPTER_DIR / TEMPLATE_FILE).unlink()
    generations = tmp_path / "generations.jsonl"
    options = {"math": [], "arithmetic": {"size": 4, "train_size": 64, "data_seed": 0}, "max_new_tokens": 2}
    hook = BenchmarkEvaluation.model_validate(
        {
            "hook": "orchestration.evaluation.benchmarks:training_hook",
            "options": {**options, "generations_path": str(generations)},
        }
    )
    metrics = run_post_training_hook(
        hook, checkpoint / ADAPTER_DIR, str(model_dir), tokenizer, rank=0, world_size=1, device=CPU, bf16=False
    )
    assert "eval/arithmetic/accuracy" in metrics
    asked = [json.loads(line)["prompt"] for line in generations.read_text().splitlines()]
    held_out = arithmetic_test_records(4, seed=0, train_size=64)
    assert asked == [build_prompt(r["instruction"], template=template or "alpaca") for r in held_out]


def test_training_batches_route_smear_on_the_prompt(model_dir):
    """The batch's prompt_mask reaches SMEAR through token_loss_sum: the loss is the prompt-routed one."""
    from transformers import AutoModelForCausalLM

    from comol import inject_adapter, make_config
    from orchestration.data.records import load_records
    from orchestration.data.tokenize import tokenize_records
    from orchestration.training.step import token_loss_sum

    tokenizer = load_tokenizer(str(model_dir))
    data = tokenize_records(load_records("arithmetic", 4, seed=2), tokenizer, cutoff_len=320, labels="all")
    batch = collate(data, list(range(4)), tokenizer.pad_token_id)
    assert batch["prompt_mask"].sum(1).tolist() == data["prompt_length"]
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    inject_adapter(model, make_config("smear", r=4, num_experts=3, dropout=0.0))
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.3)
    with torch.no_grad():
        total, _ = token_loss_sum(model, batch)
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        logits = model(**inputs, prompt_mask=batch["prompt_mask"]).logits[:, :-1]
        first_words = torch.zeros_like(batch["prompt_mask"])
        first_words[:, :8] = 1
        other = model(**inputs, prompt_mask=first_words).logits[:, :-1]  # control: another prompt, another loss
    targets = batch["labels"][:, 1:]
    loss = lambda out: torch.nn.functional.cross_entropy(  # noqa: E731
        out.reshape(-1, out.size(-1)), targets.reshape(-1), reduction="sum"
    )
    torch.testing.assert_close(total, loss(logits), rtol=1e-6, atol=1e-4)
    assert abs(float(total) - float(loss(other))) > 1.0


@pytest.mark.parametrize("method", ["smear", "flylora"])
def test_prompt_routed_and_bias_balanced_methods_train_under_fsdp(process_group, model_dir, method):
    """Through FSDP2 (one gloo rank): SMEAR takes the batch's prompt_mask past the sharded model's forward, and
    FlyLoRA's balancing bias moves in the step (after backward), by the load of the step's real tokens."""
    from comol import adapter_layers

    fields = {"r": 4, "top_k": 1} if method == "flylora" else {"r": 4, "num_experts": 2}
    config = TrainConfig.from_dict(
        {
            "model": str(model_dir),
            "method": method,
            "adapter": fields,
            "data": {"source": "arithmetic", "size": 16, "cutoff_len": 320, "labels": "all"},
            "training": {"batch_size": 4, "lr": 1e-2, "max_steps": 2},
        }
    )
    tokenizer = load_tokenizer(config.model)
    data = build_data(config, tokenizer)
    built = build_model(config, CPU, world_size=1)
    optimizer, scheduler = build_optimizer(config, built.params, data.total_steps)
    batch = collate(data.train, list(range(4)), tokenizer.pad_token_id)
    assert "prompt_mask" in batch
    seen = []
    for layer in adapter_layers(built.model).values():
        layer.register_forward_pre_hook(lambda module, args: seen.append(module.prompt_mask))
    stats = train_step(
        built.model, optimizer, scheduler, [batch], built.params, world_size=1, max_grad_norm=1.0, device=CPU
    )
    assert stats.finite
    if method == "smear":  # every SMEAR layer routed with the batch's prompt mask
        assert seen and all(mask is not None and torch.equal(mask, batch["prompt_mask"]) for mask in seen)
    if method == "flylora":
        biases = [layer._get("flylora_d") for layer in adapter_layers(built.model).values()]
        assert all(torch.count_nonzero(d) > 0 for d in biases)
