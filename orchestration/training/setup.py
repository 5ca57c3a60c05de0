"""Build what a worker trains: tokenized data, the sharded adapted model, optimizer and schedule.

Each worker builds everything itself from the validated config (nothing large crosses Ray's object
store). The base model is read once per run, not once per worker: every rank builds it on the meta
device and shards it, and rank 0 alone loads the checkpoint, injects the adapter (seeded by
``training.seed``) and broadcasts both into the shards (``fsdp.fill_from_rank0``). So all ranks start
from the same weights, and a 1-worker run (which loads in place: nothing to broadcast to) starts exactly
where a 2-worker run does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
from datasets import Dataset
from torch import nn
from transformers import get_scheduler

from comol import inject_adapter
from orchestration.data.batching import split_train_val, steps_per_epoch
from orchestration.data.records import load_records
from orchestration.data.tokenize import tokenize_records
from orchestration.models import empty_model, load_model
from orchestration.training.config import TrainConfig
from orchestration.training.fsdp import adapters_to_fp32, build_mesh, fill_from_rank0, shard_model
from orchestration.training.metrics import train_flops_per_token


@dataclass
class TrainData:
    train: Dataset
    val: Dataset | None
    total_steps: int
    steps_per_epoch: int


def build_data(config: TrainConfig, tokenizer) -> TrainData:
    data = config.data
    seed = data.seed if data.seed is not None else config.training.seed
    records = load_records(data.source, data.size, seed=seed, hub_split=data.hub_split)
    tokenized = tokenize_records(records, tokenizer, data.cutoff_len, data.labels, data.prompt_template)
    train, val = split_train_val(tokenized, data.val_size, seed)
    per_epoch = steps_per_epoch(len(train), config.training.batch_size)
    if per_epoch < 1:
        raise ValueError(
            f"{len(train)} training examples do not fill one training.batch_size of {config.training.batch_size}"
        )
    total = config.training.max_steps or math.ceil(config.training.epochs * per_epoch)
    return TrainData(train, val, total, per_epoch)


@dataclass
class TrainModel:
    model: nn.Module
    adapter_config: object
    params: list[nn.Parameter]
    trainable_params: int
    flops_per_token: float


# How the base weights reach the shards. RANK0_BROADCAST (the default with several workers): rank 0 reads the
# checkpoint, every other rank receives only its shard. EVERY_RANK: every rank reads the whole checkpoint and
# shards its own full copy (what one worker does anyway; kept to compare against in benchmarks/model_load.py).
RANK0_BROADCAST = "rank0_broadcast"
EVERY_RANK = "every_rank"
LOAD_STRATEGIES = (RANK0_BROADCAST, EVERY_RANK)


def build_model(config: TrainConfig, device: torch.device, world_size: int, load: str | None = None) -> TrainModel:
    """Base model (bf16 when configured) + adapter (fp32), FSDP2-sharded over all workers, on ``device``.

    ``load`` is one of LOAD_STRATEGIES; None picks RANK0_BROADCAST with several workers, EVERY_RANK with one.
    """
    load = load or (RANK0_BROADCAST if world_size > 1 else EVERY_RANK)
    if load not in LOAD_STRATEGIES:
        raise ValueError(f"load strategy {load!r} is not one of {', '.join(LOAD_STRATEGIES)}")
    dtype = torch.bfloat16 if config.bf16 else torch.float32
    adapter_config = config.adapter_config()

    def adapted(model: nn.Module) -> nn.Module:
        """The same seeded adapter init on every path (and on every rank that runs it)."""
        model.config.use_cache = False
        torch.manual_seed(config.training.seed)
        inject_adapter(model, adapter_config)
        adapters_to_fp32(model)
        return model

    mesh = build_mesh(device, world_size, config.resources.shard_size)
    if load == EVERY_RANK:
        model = adapted(load_model(config.model, dtype=dtype))
        trainable, flops = _counts(model)
        shard_model(model, mesh, config.bf16)
        model.to(device)
    else:
        model = adapted(empty_model(config.model, dtype=dtype))
        trainable, flops = _counts(model)
        shard_model(model, mesh, config.bf16)
        model.to_empty(device=device)  # this rank's shards only, filled below
        source = adapted(load_model(config.model, dtype=dtype)) if dist.get_rank() == 0 else None
        fill_from_rank0(model, source)
        del source
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return TrainModel(model, adapter_config, params, trainable, flops)


def _counts(model: nn.Module) -> tuple[int, float]:
    """Trainable parameters and training FLOPs per token, from the unsharded model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad), train_flops_per_token(model)


def build_optimizer(config: TrainConfig, params: list[nn.Parameter], total_steps: int):
    t = config.training
    optimizer = torch.optim.AdamW(params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
    scheduler = get_scheduler(
        t.schedule, optimizer, num_warmup_steps=min(t.warmup_steps, total_steps), num_training_steps=total_steps
    )
    return optimizer, scheduler
