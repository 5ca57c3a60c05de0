"""Build what a worker trains: tokenized data, the sharded adapted model, optimizer and schedule.

Each worker builds everything itself from the validated config (nothing large crosses Ray's object
store). The adapter is initialised from ``training.seed`` on every rank, so all ranks start from the
same weights and a 1-worker run starts exactly where a 2-worker run does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from datasets import Dataset
from torch import nn
from transformers import get_scheduler

from comol import inject_adapter
from orchestration.data.batching import split_train_val, steps_per_epoch
from orchestration.data.records import load_records
from orchestration.data.tokenize import tokenize_records
from orchestration.models import load_model
from orchestration.training.config import TrainConfig
from orchestration.training.fsdp import adapters_to_fp32, build_mesh, shard_model
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


def build_model(config: TrainConfig, device: torch.device, world_size: int) -> TrainModel:
    """Base model (bf16 when configured) + adapter (fp32), FSDP2-sharded over all workers, on ``device``."""
    model = load_model(config.model, dtype=torch.bfloat16 if config.bf16 else torch.float32)
    model.config.use_cache = False
    adapter_config = config.adapter_config()
    torch.manual_seed(config.training.seed)
    inject_adapter(model, adapter_config)
    adapters_to_fp32(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    flops = train_flops_per_token(model)
    shard_model(model, build_mesh(device, world_size, config.resources.shard_size), config.bf16)
    model.to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    return TrainModel(model, adapter_config, params, trainable, flops)


def build_optimizer(config: TrainConfig, params: list[nn.Parameter], total_steps: int):
    t = config.training
    optimizer = torch.optim.AdamW(params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)
    scheduler = get_scheduler(
        t.schedule, optimizer, num_warmup_steps=min(t.warmup_steps, total_steps), num_training_steps=total_steps
    )
    return optimizer, scheduler
