"""``comol promote SWEEP --model-name NAME``: register the best configuration's median-seed adapter.

Interface: ``comol promote SWEEP --model-name NAME [--alias champion] [--metric eval/average]
[--mode max|min] [--tracking-uri URI]``.
"""

from __future__ import annotations

import argparse

NAME = "promote"
HELP = "register a sweep's best configuration (by seed mean) in the MLflow model registry and move an alias"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", metavar="SWEEP", help="the sweep's name")
    parser.add_argument("--model-name", required=True, help="registered model name (created if new)")
    parser.add_argument("--alias", default="champion", help="alias to move to the new version (default: champion)")
    parser.add_argument(
        "--metric", default="eval/average", help="metric whose seed mean picks the best (default: eval/average)"
    )
    parser.add_argument("--mode", choices=["max", "min"], default="max", help="higher (max) or lower (min) is better")
    from orchestration.tracking.store import DEFAULT_DESCRIPTION

    parser.add_argument("--tracking-uri", default=None, help=f"MLflow tracking URI (default: {DEFAULT_DESCRIPTION})")


def run(args: argparse.Namespace) -> int:
    from orchestration.registry.promote import promote
    from orchestration.tracking.seeds import format_mean_std

    result = promote(args.sweep, args.model_name, args.alias, args.metric, args.tracking_uri, args.mode)
    c = result.choice
    print(
        f"best configuration: {c.label} (config {c.config_id}): {args.metric} {format_mean_std(c.mean, c.std)} "
        f"(mean ± sample std over {c.seeds} seeds)"
    )
    print(f"median seed: {c.run.seed} (run {c.run.run_id}, {args.metric} {c.run_value:.4f})")
    if not result.created:
        print(
            f"models:/{result.model_name}@{result.alias} already is version {result.version} "
            "(this very run): nothing changed"
        )
        return 0
    print(f"registered models:/{result.model_name}/{result.version}; alias {result.alias} → version {result.version}")
    if result.previous_version:
        print(f"former {result.alias} version {result.previous_version} keeps alias {result.previous_alias}")
    print(f"load it with: comol generate --model models:/{result.model_name}@{result.alias} --prompt '…'")
    return 0
