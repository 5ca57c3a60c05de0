"""``comol train CONFIG.yaml``: one fine-tuning job on Ray Train, with a progress bar.

Interface: ``comol train CONFIG.yaml [--set KEY=VALUE ...] [--address ADDR] [--verbose]``.
The config is validated before Ray is imported or started (a bad config exits 2 with the field
named). With no ``--address`` (and no ``$RAY_ADDRESS``) a private local Ray is started in its own
temp dir and stopped afterwards; it is never a shared or machine-wide one.
"""

from __future__ import annotations

import argparse
from typing import Any

NAME = "train"
HELP = "fine-tune an adapter from a YAML config on Ray Train workers (FSDP2), and print where it is saved"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG.yaml", help="training config (see configs/train_quickstart.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set training.max_steps=10 (repeatable)",
    )
    parser.add_argument(
        "--address", default=None, help="Ray cluster to use (default $RAY_ADDRESS; unset: start a private local Ray)"
    )
    parser.add_argument("--verbose", action="store_true", help="stream the workers' logs to this terminal")


def _describe(metrics: dict[str, Any]) -> str:
    parts = [f"loss {metrics['loss']:.4f}"] if "loss" in metrics else []
    if "val_loss" in metrics:
        parts.append(f"val {metrics['val_loss']:.4f}")
    if "lr" in metrics:
        parts.append(f"lr {metrics['lr']:.2e}")
    if "tokens_per_s" in metrics:
        parts.append(f"{metrics['tokens_per_s']:.0f} tok/s")
    return " · ".join(parts)


def run(args: argparse.Namespace) -> int:
    from orchestration.training.config import load_config

    config = load_config(args.config, args.overrides)  # ConfigError → exit 2, before any Ray import

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from orchestration.ray_session import connect_ray
    from orchestration.training.launch import train
    from orchestration.training.results import TrainingFailed

    console = Console(soft_wrap=True)  # paths and error messages stay on one line, copy-pasteable
    console.print(
        f"[bold]comol train[/bold]: {config.method} on {config.model}, data {config.data.source}, "
        f"{config.resources.num_workers} worker(s), output {config.output_dir}"
    )
    progress = Progress(
        TextColumn("[bold blue]train"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
    )
    task = progress.add_task("starting Ray workers…", total=None)
    first_loss: list[float] = []

    def on_metrics(metrics: dict[str, Any]) -> None:
        if "loss" in metrics and not first_loss:
            first_loss.append(metrics["loss"])
        progress.update(task, total=metrics.get("total_steps"), completed=metrics.get("step", 0))
        progress.update(task, description=_describe(metrics))
        if not console.is_terminal:  # no live bar in logs and pipes: one line per report instead
            progress.console.print(f"step {metrics.get('step')}/{metrics.get('total_steps')}: {_describe(metrics)}")
        if metrics.get("resumed_from_step") and metrics.get("step") == metrics["resumed_from_step"] + 1:
            progress.console.print(f"resumed from the checkpoint of step {metrics['resumed_from_step']}")
        if "checkpoint_path" in metrics:
            progress.console.print(f"step {metrics['step']}: checkpoint {metrics['checkpoint_path']}")

    session = connect_ray(args.address, verbose=args.verbose)
    failed = True
    try:
        with progress:
            result = train(config, on_metrics=on_metrics)
        failed = False
    except TrainingFailed as err:
        console.print(f"[bold red]comol train: failed[/bold red]: {err}")
        return 1
    finally:
        logs = session.close(keep_logs=failed)
        if logs:
            console.print(f"Ray logs kept in {logs}")
    final = result.metrics
    start = f"{first_loss[0]:.4f} → " if first_loss else ""
    console.print(
        f"run {result.run_name}: {final.get('step')} steps, loss {start}{final.get('loss', float('nan')):.4f}"
    )
    if "val_loss" in final:
        console.print(f"validation loss {final['val_loss']:.4f}")
    for key, value in sorted(final.items()):
        if key.startswith("eval/"):
            console.print(f"{key} = {value}")
    console.print(f"Adapter saved to: {result.adapter_path}")
    return 0
