"""Distributed fine-tuning: Ray Train V2 workers, FSDP2 on GPUs and CPUs, adapter-only checkpoints.

Entry points: ``orchestration.training.config`` (``TrainConfig``, ``load_config``; no Ray import, so the
CLI validates before touching Ray) and ``orchestration.training.launch.train(config, ...)`` which runs
the job and returns a ``TrainResult``. Workers run ``orchestration.training.loop.train_loop_per_worker``.
"""

from orchestration.training.config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config"]
