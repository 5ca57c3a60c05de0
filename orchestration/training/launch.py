"""``train(config)``: run one fine-tuning job as a Ray Train V2 ``TorchTrainer`` and return its result.

Called by ``comol train`` and by the sweep's trial entry: it takes a validated ``TrainConfig`` (the workers get
that object, pickled by Ray), accepts extra Ray Train ``UserCallback`` s (e.g. Tune's ``TuneReportCallback``)
and an ``on_metrics`` function that sees every report (rank 0's metrics) on the driver. It does not start
Ray: with no Ray initialised, ``TorchTrainer.fit`` starts a default one. It changes nothing in this process
(no environment variables): the run's controller settings travel in the controller's runtime env.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ray
from ray._common.constants import RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_ENV_VAR
from ray.train import CheckpointConfig, FailureConfig, Result, RunConfig, ScalingConfig, UserCallback
from ray.train.torch import TorchConfig, TorchTrainer
from ray.train.v2._internal.constants import (
    DEFAULT_RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_VALUE,
    HEALTH_CHECK_INTERVAL_S_ENV_VAR,
    WORKER_GROUP_START_TIMEOUT_S_ENV_VAR,
    get_env_vars_to_propagate,
)
from ray.train.v2._internal.execution.controller import TrainController
from ray.util.queue import Empty, Queue

from orchestration.training.config import TrainConfig
from orchestration.training.loop import train_loop_per_worker
from orchestration.training.results import TrainingDivergedError, TrainingFailed, TrainResult

logger = logging.getLogger(__name__)
WorkerLoop = Callable[[dict[str, Any]], Any]


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


def controller_settings(config: TrainConfig) -> dict[str, str]:
    """The run's settings that Ray Train's controller reads from its own environment."""
    return {
        WORKER_GROUP_START_TIMEOUT_S_ENV_VAR: str(config.resources.start_timeout_s),
        HEALTH_CHECK_INTERVAL_S_ENV_VAR: str(config.logging.poll_interval_s),
    }


class RunTrainer(TorchTrainer):
    """A TorchTrainer whose Train controller gets this run's settings (``controller_env``) in its runtime env.

    Ray Train's controller reads its worker-group start timeout and polling interval from environment variables,
    which Ray fills from the driver process's ``os.environ`` when it creates the controller actor. Setting them
    there would change every later run in this process (a sweep's next trial, a test session); giving them to
    the controller actor as its runtime env keeps them to this run. The actor is created exactly as Ray 2.60's
    ``DataParallelTrainer._initialize_and_run_controller`` does, with these variables added.
    """

    def __init__(self, *args: Any, controller_env: dict[str, str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.controller_env = dict(controller_env)

    def _initialize_and_run_controller(self, **controller_init_kwargs: Any) -> Result:
        env_vars = {**get_env_vars_to_propagate(), **self.controller_env}
        env_vars.setdefault(
            RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_ENV_VAR, DEFAULT_RAY_WARN_BLOCKING_GET_INSIDE_ASYNC_VALUE
        )
        controller_cls = ray.remote(
            num_cpus=0,
            label_selector={ray._raylet.RAY_NODE_ID_KEY: ray.get_runtime_context().get_node_id()},
            runtime_env={"env_vars": env_vars},
        )(TrainController)
        controller = controller_cls.remote(**controller_init_kwargs)
        if threading.current_thread() is threading.main_thread():  # Tune trials run in other threads
            self._register_sigint_handler(controller)
        ray.get(controller.run.remote())
        return ray.get(controller.get_result.remote())


def build_trainer(
    config: TrainConfig,
    run_name: str,
    callbacks: Sequence[UserCallback] = (),
    worker_loop: WorkerLoop = train_loop_per_worker,
) -> TorchTrainer:
    """The TorchTrainer for ``config``: scaling, storage, restarts and checkpoint retention from the config.
    ``worker_loop`` is what every worker runs with ``{"config": config}`` (a wrapper of the default, in tests)."""
    res = config.resources
    per_worker = {"CPU": res.cpus_per_worker} | ({"GPU": res.gpus_per_worker} if config.use_gpu else {})
    return RunTrainer(
        worker_loop,
        controller_env=controller_settings(config),
        train_loop_config={"config": config},
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
    config: TrainConfig,
    *,
    run_name: str | None = None,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
    callbacks: Sequence[UserCallback] = (),
    worker_loop: WorkerLoop = train_loop_per_worker,
) -> TrainResult:
    """Train one adapter from a validated config; blocks until done. ``on_metrics`` runs on a driver thread for
    every report.

    Raises TrainingDivergedError for a non-finite loss, TrainingFailed when the workers failed more often than
    ``resources.max_failures``.
    """
    cfg = config
    name = run_name or cfg.run_name or make_run_name(cfg)
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
    trainer = build_trainer(cfg, name, [MetricsRelay(queue), *callbacks], worker_loop)
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
