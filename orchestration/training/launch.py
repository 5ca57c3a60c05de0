"""``train(config)``: run one fine-tuning job as a Ray Train V2 ``TorchTrainer`` and return its result.

Meant to be called from the CLI and, later, from a Ray Tune function trainable: it takes a validated
``TrainConfig`` or a plain dict, accepts extra Ray Train ``UserCallback`` s (e.g. Tune's
``TuneReportCallback``) and an ``on_metrics`` function that sees every report (rank 0's metrics) on the
driver. It does not start Ray: with no Ray initialised, ``TorchTrainer.fit`` starts a default one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig, UserCallback
from ray.train.torch import TorchConfig, TorchTrainer
from ray.util.queue import Empty, Queue

from orchestration.training.config import TrainConfig
from orchestration.training.loop import train_loop_per_worker
from orchestration.training.results import TrainingDivergedError, TrainingFailed, TrainResult

START_TIMEOUT_ENV = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
POLL_INTERVAL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
logger = logging.getLogger(__name__)


class MetricsRelay(UserCallback):
    """Runs in the Ray Train controller actor: forwards rank 0's reported metrics to the driver's queue."""

    def __init__(self, queue: Queue):
        self.queue = queue

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        item = dict(metrics[0])
        if checkpoint is not None:
            item["checkpoint_path"] = checkpoint.path
        self.queue.put(item)


def make_run_name(config: TrainConfig) -> str:
    """Unique per run: reusing a name would resume that run's checkpoints."""
    return f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def local_run_dir(config: TrainConfig, run_name: str) -> Path | None:
    return None if "://" in config.output_dir else Path(config.output_dir) / run_name


def build_trainer(config: TrainConfig, run_name: str, callbacks: Sequence[UserCallback] = ()) -> TorchTrainer:
    """The TorchTrainer for ``config``: scaling, storage, restarts and checkpoint retention from the config."""
    res = config.resources
    per_worker = {"CPU": res.cpus_per_worker} | ({"GPU": res.gpus_per_worker} if config.use_gpu else {})
    run_dir = local_run_dir(config, run_name)
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": config.model_dump(mode="json"), "run_dir": str(run_dir) if run_dir else None},
        torch_config=TorchConfig(backend="nccl" if config.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=res.num_workers, use_gpu=config.use_gpu, resources_per_worker=per_worker
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=config.output_dir,
            failure_config=FailureConfig(max_failures=res.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=config.logging.keep_checkpoints),
            callbacks=list(callbacks),
        ),
    )


def train(
    config: TrainConfig | Mapping[str, Any],
    *,
    run_name: str | None = None,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
    callbacks: Sequence[UserCallback] = (),
) -> TrainResult:
    """Train one adapter; blocks until done. ``on_metrics`` runs on a driver thread for every report.

    Raises ConfigError for a bad config (before any Ray call), TrainingDivergedError for a non-finite
    loss, TrainingFailed when the workers failed more often than ``resources.max_failures``.
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config))
    name = run_name or cfg.run_name or make_run_name(cfg)
    # Both are read by the Ray Train controller, which gets the driver's values of these variables.
    os.environ[START_TIMEOUT_ENV] = str(cfg.resources.start_timeout_s)
    os.environ[POLL_INTERVAL_ENV] = str(cfg.logging.poll_interval_s)
    queue = Queue(actor_options={"num_cpus": 0})
    history: list[dict[str, Any]] = []
    stop = threading.Event()

    def drain() -> None:
        while True:
            try:
                item = queue.get(timeout=0.2)
            except Empty:
                if stop.is_set():
                    return
                continue
            history.append(item)
            if on_metrics is not None:
                try:
                    on_metrics(item)
                except Exception:  # a broken progress display must not kill the run
                    logger.exception("on_metrics callback failed")

    drainer = threading.Thread(target=drain, name="comol-metrics", daemon=True)
    drainer.start()
    trainer = build_trainer(cfg, name, [MetricsRelay(queue), *callbacks])
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as err:
        raise TrainingFailed(f"training run {name!r} failed (storage: {cfg.output_dir}/{name}): {err}") from err
    finally:
        stop.set()
        drainer.join()
        queue.shutdown()
    # The last report (rank 0's metrics, via the relay) says how the run ended: step, status,
    # resumed_from_step. Ray's return_value comes from its first worker, not always rank 0 after a restart.
    summary = result.return_value or {}
    final = dict((history[-1] if history else None) or summary.get("metrics") or result.metrics or {})
    if final.get("status") == "diverged":
        raise TrainingDivergedError(f"run {name!r}: {final.get('error') or summary.get('error')}")
    if result.checkpoint is None:
        raise TrainingFailed(f"training run {name!r} finished without a final checkpoint")
    final.pop("checkpoint_path", None)
    checkpoint_path = result.checkpoint.path
    return TrainResult(
        run_name=name,
        run_path=str(result.path),
        checkpoint_path=checkpoint_path,
        adapter_path=str(Path(checkpoint_path) / "adapter"),
        metrics=final,
        history=history,
        resumed_from_step=int(final.get("resumed_from_step", 0)),
    )
