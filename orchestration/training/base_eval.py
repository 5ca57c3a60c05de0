"""The untrained base model's evaluation, run as a training job is: a Ray Train ``TorchTrainer`` with the trial's
workers, evaluation hook, options and prompt template, and no adapter and no training step.

Running it on the same workers (rather than in the driver) keeps every setting that moves the score the same as
a trial's: the hook's rank sharding, the device, the precision, the batch size. It is what every trained row is
read against, so it must be scored exactly as they are.
"""

from __future__ import annotations

import time
from typing import Any

import ray
import ray.train
import ray.train.torch
import torch

from orchestration.models import load_tokenizer
from orchestration.training.config import TrainConfig
from orchestration.training.hooks import run_base_hook
from orchestration.training.launch import build_trainer
from orchestration.training.results import TrainingFailed
from orchestration.training.startup import METRIC_EVAL


def base_loop_per_worker(loop_config: dict[str, Any]) -> dict[str, float]:
    """Every rank: load the base model and run the evaluation hook; every rank returns rank 0's metrics."""
    config: TrainConfig = loop_config["config"]
    context = ray.train.get_context()
    device = ray.train.torch.get_device()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    else:
        torch.set_num_threads(max(1, int(config.resources.cpus_per_worker)))
    tokenizer = load_tokenizer(config.model)
    started = time.perf_counter()
    metrics = run_base_hook(
        config.evaluation,
        config.model,
        tokenizer,
        config.data.prompt_template,
        rank=context.get_world_rank(),
        world_size=context.get_world_size(),
        device=device,
        bf16=config.bf16,
    )
    return {**metrics, METRIC_EVAL: time.perf_counter() - started}


def evaluate_base(config: TrainConfig, run_name: str) -> dict[str, float]:
    """The untrained model's ``eval/*`` metrics (and ``time/eval_s``) under ``config``'s evaluation; blocks."""
    if config.evaluation is None:
        raise ValueError("the base model is evaluated with the trials' evaluation hook, and this config has none")
    trainer = build_trainer(config, run_name, worker_loop=base_loop_per_worker)
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as err:
        raise TrainingFailed(f"base-model evaluation {run_name!r} failed: {err}") from err
    return dict(result.return_value or {})
