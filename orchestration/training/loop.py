"""``train_loop_per_worker``: what every Ray Train worker runs.

Every rank runs the same steps and calls ``ray.train.report`` at the same steps (report is a barrier);
rank 0 attaches the checkpoints. After a worker-group restart the loop resumes from
``ray.train.get_checkpoint()`` (adapter, optimizer, scheduler, step), never from step 0. A non-finite
loss is not retried (it would recur): the run reports ``status: diverged`` and stops, and the driver
turns that into a clear error.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from orchestration import IMPORT_STARTED_AT
from orchestration.data.batching import collate, eval_shard, step_micro_batches
from orchestration.models import load_tokenizer
from orchestration.training.checkpointing import (
    ADAPTER_DIR,
    gather_adapter,
    gather_optimizer,
    read_checkpoint,
    write_checkpoint,
)
from orchestration.training.config import TrainConfig
from orchestration.training.hooks import resolve_hook, run_post_training_hook
from orchestration.training.metrics import Throughput, mfu, peak_flops, peak_memory_gb
from orchestration.training.setup import TrainData, build_data, build_model, build_optimizer
from orchestration.training.startup import METRIC_EVAL, StartupClock
from orchestration.training.step import StepStats, train_step, validation_loss

FINAL_CHECKPOINT = "final"
_IMPORTED_AT = time.time()  # the project's imports in this process ran from orchestration.IMPORT_STARTED_AT to here


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


class _Worker:
    """The state of one rank for one attempt (a restart builds a new one)."""

    def __init__(self, config: TrainConfig):
        self.config = config
        self.clock = StartupClock(IMPORT_STARTED_AT, _IMPORTED_AT - IMPORT_STARTED_AT)
        clock = self.clock
        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        else:
            torch.set_num_threads(max(1, int(self.config.resources.cpus_per_worker)))
        if self.config.evaluation is not None:  # a misnamed hook fails now, not after all the training
            resolve_hook(self.config.evaluation.hook)
        with clock.phase("tokenizer"):
            self.tokenizer = load_tokenizer(self.config.model)
        with clock.phase("data"):
            self.data: TrainData = build_data(self.config, self.tokenizer)
        with clock.phase("model"):
            self.built = build_model(self.config, self.device, self.world_size)
        self.model = self.built.model
        with clock.phase("optimizer"):
            self.optimizer, self.scheduler = build_optimizer(self.config, self.built.params, self.data.total_steps)
            self.peak = peak_flops(self.device)
            self.start_step = self._resume()

    def _resume(self) -> int:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return 0
        with checkpoint.as_directory() as folder:
            return read_checkpoint(Path(folder), self.model, self.optimizer, self.scheduler)

    # --- batches -------------------------------------------------------------------------------
    def micro_batches(self, step: int) -> list[dict[str, torch.Tensor]]:
        t = self.config.training
        indices = step_micro_batches(
            len(self.data.train),
            step,
            batch_size=t.batch_size,
            accumulation=t.gradient_accumulation,
            rank=self.rank,
            world_size=self.world_size,
            seed=t.seed,
        )
        return [_to(collate(self.data.train, i, self.tokenizer.pad_token_id), self.device) for i in indices]

    def val_batches(self):
        val = self.data.val
        for indices in eval_shard(len(val), self.rank, self.world_size, self.config.micro_batch_size):
            yield _to(collate(val, indices, self.tokenizer.pad_token_id), self.device)

    # --- metrics -------------------------------------------------------------------------------
    def base_metrics(self, step: int) -> dict[str, Any]:
        return {
            "step": step,
            "total_steps": self.data.total_steps,
            "epoch": step / self.data.steps_per_epoch,
            "resumed_from_step": self.start_step,
            "world_size": self.world_size,
            "trainable_params": self.built.trainable_params,
        }

    def step_metrics(self, step: int, window: list[StepStats], meter: Throughput) -> dict[str, Any]:
        tokens_per_s, _ = meter.read()
        peak_mem = torch.tensor([peak_memory_gb(self.device)], dtype=torch.float64, device=self.device)
        dist.all_reduce(peak_mem, op=dist.ReduceOp.MAX)
        metrics = self.base_metrics(step) | {
            "loss": sum(s.loss for s in window) / len(window),
            "lm_loss": sum(s.lm_loss for s in window) / len(window),
            "aux_loss": sum(s.aux_loss for s in window) / len(window),
            "grad_norm": window[-1].grad_norm,
            "lr": window[-1].lr,
            "tokens_per_s": tokens_per_s,
            "peak_mem_gb": float(peak_mem),
        }
        utilisation = mfu(tokens_per_s, self.built.flops_per_token, self.peak, self.world_size)
        if utilisation is not None:
            metrics["mfu"] = utilisation
        return metrics

    # --- checkpoints ---------------------------------------------------------------------------
    def report_with_checkpoint(self, metrics: dict[str, Any], step: int, name: str, extra=None) -> dict[str, Any]:
        """Collective: gather; rank 0 writes and attaches the checkpoint; ``extra(adapter_dir)`` adds metrics."""
        adapter = gather_adapter(self.model)
        optimizer = gather_optimizer(self.model, self.optimizer)
        with tempfile.TemporaryDirectory(prefix="comol-ckpt-") as tmp:
            checkpoint = None
            if self.rank == 0:
                write_checkpoint(
                    Path(tmp),
                    self.model,
                    self.built.adapter_config,
                    adapter,
                    optimizer,
                    self.scheduler.state_dict(),
                    step,
                    self.config.data.prompt_template,
                )
                checkpoint = ray.train.Checkpoint.from_directory(tmp)
            if extra is not None:
                metrics = metrics | extra(Path(tmp) / ADAPTER_DIR if self.rank == 0 else None)
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=name if checkpoint else None)
        # Commit barrier: Ray Train registers reports when its controller polls the workers, so a rank that
        # died right after reporting could take this checkpoint with it (the restart would then begin at
        # an older one). Every rank waits until the controller has registered it before training on.
        ray.train.get_all_reported_checkpoints(consistency_mode=ray.train.CheckpointConsistencyMode.COMMITTED)
        return metrics

    def evaluate_final(self, adapter_dir: Path | None) -> dict[str, float]:
        """The post-training evaluation hook, on every rank; see hooks.py. Reported with its duration and the
        start-up marks (see startup.py)."""
        started = time.perf_counter()
        metrics = run_post_training_hook(
            self.config.evaluation,
            adapter_dir,
            self.config.model,
            self.tokenizer,
            rank=self.rank,
            world_size=self.world_size,
            device=self.device,
            bf16=self.config.bf16,
        )
        evaluated = {METRIC_EVAL: time.perf_counter() - started} if self.config.evaluation is not None else {}
        return {**metrics, **evaluated, **self.clock.values}

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg, total = self.config, self.data.total_steps
        log_every, eval_every, ckpt_every = cfg.logging.log_every, cfg.logging.eval_every, cfg.logging.checkpoint_every
        meter, window = Throughput(), []
        metrics = self.base_metrics(self.start_step)
        for step in range(self.start_step + 1, total + 1):
            # Dropout randomness is a function of (seed, step, rank): a resumed run replays it exactly.
            torch.manual_seed(cfg.training.seed * 1_000_003 + step * 7_919 + self.rank)
            self.clock.first_step()
            stats = train_step(
                self.model,
                self.optimizer,
                self.scheduler,
                self.micro_batches(step),
                self.built.params,
                world_size=self.world_size,
                max_grad_norm=cfg.training.max_grad_norm,
                device=self.device,
            )
            meter.add(stats.tokens)
            window.append(stats)
            if not stats.finite:
                return self.diverged(step, stats)
            last = step == total
            log = step % log_every == 0 or last
            evaluate = self.data.val is not None and ((eval_every and step % eval_every == 0) or last)
            checkpoint = bool(ckpt_every) and step % ckpt_every == 0 and not last
            if not (log or evaluate or checkpoint):
                continue
            metrics = self.step_metrics(step, window, meter)
            window = []
            if evaluate:
                metrics["val_loss"] = validation_loss(self.model, self.val_batches(), self.device)
            if last:
                break
            if checkpoint:
                self.report_with_checkpoint(metrics, step, f"checkpoint_{step:06d}")
            else:
                ray.train.report(metrics)
        self.clock.steps_done()
        final = self.report_with_checkpoint(
            metrics | {"status": "finished"}, total, FINAL_CHECKPOINT, extra=self.evaluate_final
        )
        return {"status": "finished", "metrics": final, "resumed_from_step": self.start_step}

    def diverged(self, step: int, stats: StepStats) -> dict[str, Any]:
        message = (
            f"non-finite training loss at step {step}: loss={stats.loss}, grad_norm={stats.grad_norm} "
            f"(lr {stats.lr:g}); the run stopped without applying this step"
        )
        metrics = self.base_metrics(step) | {"status": "diverged", "loss": stats.loss, "error": message}
        ray.train.report(metrics)
        return {"status": "diverged", "metrics": metrics, "error": message}


def train_loop_per_worker(loop_config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train entry: ``{"config": the validated TrainConfig}`` (pickled by Ray, not validated again).

    Every rank returns the same summary (metrics are all-reduced): Ray hands back its first worker's.
    """
    return _Worker(loop_config["config"]).run()
