"""``comol promote SWEEP --model-name NAME``: register the best configuration's median-seed adapter, if the
promotion gate finds it better than the champion (and LoRA) by the report's own test.

Interface: ``comol promote SWEEP --model-name NAME [--alias champion] [--metric eval/average]
[--mode max|min] [--force] [--dry-run] [--tracking-uri URI]``. Exit code 1 when the gate refuses.
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
    parser.add_argument(
        "--force", action="store_true", help="promote even if the gate refuses (the version records it was forced)"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the gate's decision; register nothing")
    from orchestration.tracking.store import DEFAULT_DESCRIPTION

    parser.add_argument("--tracking-uri", default=None, help=f"MLflow tracking URI (default: {DEFAULT_DESCRIPTION})")


def run(args: argparse.Namespace) -> int:
    from orchestration.registry.promote import promote
    from orchestration.tracking.seeds import format_mean_std

    result = promote(
        args.sweep,
        args.model_name,
        args.alias,
        args.metric,
        args.tracking_uri,
        args.mode,
        force=args.force,
        dry_run=args.dry_run,
    )
    c = result.choice
    print(
        f"best configuration: {c.label} (config {c.config_id}): {args.metric} {format_mean_std(c.mean, c.std)} "
        f"(mean ± sample std over {c.seeds} seeds)"
    )
    print(f"median seed: {c.run.seed} (run {c.run.run_id}, {args.metric} {c.run_value:.4f})")
    target = f"models:/{result.model_name}@{result.alias}"
    if result.decision is None:
        print(f"{target} already is version {result.version} (this very run): nothing changed")
        return 0
    for opponent in result.decision.opponents:
        print(opponent.line())
    for note in result.decision.notes:
        print(f"note: {note}")
    if not result.decision.opponents:
        print(f"gate: nothing to compare with ({target} has no version yet, and no LoRA to beat): passes")
    losses = " and ".join(result.decision.refused_by())
    verdict = "passes" if result.decision.passed else f"refuses: not better than {losses}"
    if result.decision.opponents:
        print(f"gate: {verdict}")
    if result.dry_run:
        action = "would promote" if result.decision.passed or args.force else "would not promote"
        print(f"dry run: {action} {c.label} to {target}{' (forced)' if result.forced else ''}; nothing written")
        return 0 if result.decision.passed or args.force else 1
    if result.refused:
        print(f"not promoted: {target} is unchanged (--force promotes anyway, recorded on the version)")
        return 1
    if result.forced:
        print("forced past the gate: the version's comol.gate tag and description say so")
    print(f"registered models:/{result.model_name}/{result.version}; alias {result.alias} → version {result.version}")
    if result.previous_version:
        print(f"former {result.alias} version {result.previous_version} keeps alias {result.previous_alias}")
    print(f"load it with: comol generate --model {target} --prompt '…'")
    return 0
