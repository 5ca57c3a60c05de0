"""Trial start-up of the quickstart, split into its parts, for the two ways the base weights reach the workers,
side by side in one run: trial start → first optimizer step.

Each run is one quickstart trial's training job (``search_spaces/quickstart.yaml``'s first configuration: SmolLM2,
2 Ray Train workers, HSDP with ``shard_size: 1``, so every worker holds the whole model) cut to one step and no
evaluation, started by ``train()`` as a sweep trial starts it. Runs alternate between (the order flips every
round, so a change in the machine's load hits both alike):

- ``rank0_broadcast`` (the default): rank 0 reads the checkpoint and broadcasts the whole model through the gloo
  process group; the other ranks build it empty;
- ``every_rank``: each rank reads the converted model from the local cache itself.

Printed: per variant the median start-up and its parts (``orchestration/training/startup.py``: Ray Train's
controller and workers, the project's imports in each worker, tokenizer, data, model, optimizer), their ratio,
and the machine's load. On a shared 2-core machine (load ~21) the two were alike (model 4.8 s vs 5.1 s): two
ranks reading at once on two cores cost what one read plus a broadcast costs, so the default stays.

    python benchmarks/trial_startup.py               # 3 rounds (6 training jobs)
    python benchmarks/trial_startup.py --rounds 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("rank0_broadcast", "every_rank")
PARTS = ("workers", "imports", "dispatch", "tokenizer", "data", "model", "optimizer")


def worker_loop(load: str):
    """The training loop with the base weights loaded by ``load`` (the strategy under comparison)."""

    def run(loop_config: dict[str, Any]) -> Any:
        from orchestration.training import setup
        from orchestration.training.loop import train_loop_per_worker

        setup.default_load = lambda world_size, shard_size: load
        return train_loop_per_worker(loop_config)

    return run


def quickstart_config(root: Path):
    """The quickstart's first trial config, one step, no evaluation, storage under ``root``."""
    from orchestration.sweep.space import plan
    from orchestration.sweep.spec import load_spec

    trial = plan(load_spec(REPO / "search_spaces" / "quickstart.yaml"), str(root / "train")).trials[0]
    config = trial.train
    training = config.training.model_copy(update={"max_steps": 1, "warmup_steps": 0})
    return config.model_copy(update={"training": training, "evaluation": None, "output_dir": str(root / "train")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each runs both variants (order alternates)")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from orchestration.ray_session import connect_ray
    from orchestration.training.launch import train
    from orchestration.training.startup import METRIC_STARTUP, startup_metrics

    console = Console(width=160)
    root = Path(tempfile.mkdtemp(prefix="comol-startup-"))
    load_before = os.getloadavg()
    session = connect_ray(num_cpus=2)
    results: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    try:
        config = quickstart_config(root)
        for round_index in range(args.rounds):
            order = VARIANTS if round_index % 2 == 0 else VARIANTS[::-1]
            for variant in order:
                started = time.time()
                name = f"startup-{variant}-{uuid.uuid4().hex[:6]}"
                result = train(config, run_name=name, worker_loop=worker_loop(variant))
                measured = startup_metrics(result.metrics, started)
                results[variant].append(measured)
                console.print(f"round {round_index + 1} {variant}: start-up {measured[METRIC_STARTUP]:.1f} s")
    finally:
        session.close()
        shutil.rmtree(root, ignore_errors=True)
    load_after = os.getloadavg()

    def median(variant: str, key: str) -> float:
        return statistics.median(r.get(key, float("nan")) for r in results[variant])

    table = Table(title=f"quickstart trial start-up (s), median of {args.rounds} per variant, 1 step, no evaluation")
    table.add_column("figure")
    for variant in VARIANTS:
        table.add_column(variant, justify="right")
    table.add_column("after / before", justify="right")
    for key in [METRIC_STARTUP, *(f"time/startup/{p}_s" for p in PARTS)]:
        before, after = median(VARIANTS[0], key), median(VARIANTS[1], key)
        ratio = f"{after / before:.2f}" if before > 0 else "–"
        table.add_row(key, f"{before:.1f}", f"{after:.1f}", ratio)
    console.print(table)
    console.print(
        f"machine: {os.cpu_count()} CPUs, load average (1/5/15 min) {'/'.join(f'{v:.1f}' for v in load_before)} "
        f"before, {'/'.join(f'{v:.1f}' for v in load_after)} after"
    )


if __name__ == "__main__":
    main()
