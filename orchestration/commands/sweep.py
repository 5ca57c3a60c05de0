"""``comol sweep SPEC.yaml [--resume]``: run an ablation grid or an Optuna search on Ray Tune, tracked in MLflow.

Works the same on a laptop (a private local Ray is started) and as
``ray job submit --working-dir . -- comol sweep SPEC.yaml`` on a cluster ($RAY_ADDRESS is joined).
Every trial config is validated before Ray starts; bad input exits with code 2 and names the field. ``--resume``
refuses a spec that changed since the sweep was recorded (beyond seeds and concurrency) unless
``--allow-spec-change`` is given, which records the new spec as a revision.
``--dry-run`` validates and lists the plan; ``--dry-run --json`` prints it as JSON with each configuration's
trainable parameters, so the cost of a sweep is seen before it is launched.
"""

from __future__ import annotations

import argparse
import json

NAME = "sweep"
HELP = "run a sweep (grid ablation or Optuna search) over CoMoL's axes, three seeds each, tracked in MLflow"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", metavar="SPEC.yaml", help="sweep spec, e.g. search_spaces/quickstart.yaml")
    parser.add_argument(
        "--resume", action="store_true", help="continue the sweep: finished trials (in MLflow) are not run again"
    )
    parser.add_argument(
        "--allow-spec-change",
        action="store_true",
        help="with --resume: continue although the spec changed (beyond seeds and concurrency) since the sweep was "
        "recorded; the new spec is recorded on the parent run as a revision, the earlier ones are kept",
    )
    from orchestration.tracking.store import DEFAULT_DESCRIPTION

    parser.add_argument(
        "--tracking-uri", default=None, help=f"MLflow tracking URI (default: the spec's, else {DEFAULT_DESCRIPTION})"
    )
    parser.add_argument("--output-dir", default=None, help="sweep folder (default: outputs/sweeps/<name>)")
    parser.add_argument(
        "--address", default=None, help="Ray cluster to join ('auto' for this machine's); default: $RAY_ADDRESS"
    )
    parser.add_argument(
        "--ray-temp-dir", default=None, help="temp dir of the local Ray this command starts (default: a fresh /tmp/cr*)"
    )
    parser.add_argument(
        "--verbose", action="store_true", help="stream the Ray workers' logs to this terminal (default: progress only)"
    )
    parser.add_argument("--dry-run", action="store_true", help="validate the spec and list its trials; run nothing")
    parser.add_argument(
        "--json",
        action="store_true",
        help="with --dry-run: print one JSON object, per planned configuration its method, rank, experts, core "
        "routing, alpha and trainable parameters (counted on the meta device from the model's config)",
    )


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from comol.errors import ConfigError
    from orchestration.sweep.runner import prepare, results_table, run_sweep, where_to_look
    from orchestration.sweep.space import label_params
    from orchestration.sweep.spec import load_spec
    from orchestration.tracking import schema

    console = Console(soft_wrap=True)  # long URIs and commands stay on one line, copy-pasteable
    if args.json and not args.dry_run:
        raise ConfigError("json", "--json prints the plan of --dry-run; add --dry-run (a sweep prints its progress)")
    if args.allow_spec_change and not args.resume:
        raise ConfigError("allow-spec-change", "only applies to --resume (a new sweep records the spec it is given)")
    if args.dry_run:
        spec, paths, plan = prepare(args.spec, args.output_dir)
        if args.json:
            from orchestration.sweep.cost import sweep_cost

            print(json.dumps(sweep_cost(plan, str(paths.sweep_dir)), indent=2))
            return 0
        if plan.kind == "grid":
            from orchestration.sweep.progress import describe  # Ray Tune's import: only for this listing

            shown = label_params(spec)
            for trial in plan.trials:
                console.print(f"{trial.key}  {describe(trial, shown)}")
        console.print(
            f"spec OK: {plan.configurations} configurations × {len(spec.seeds)} seeds ({plan.kind}); "
            f"sweep folder {paths.sweep_dir}"
        )
        return 0
    spec = load_spec(args.spec)
    result = run_sweep(  # validates every trial before Ray or MLflow is touched
        spec,
        resume=args.resume,
        allow_spec_change=args.allow_spec_change,
        tracking_uri=args.tracking_uri,
        output_dir=args.output_dir,
        address=args.address,
        ray_temp_dir=args.ray_temp_dir,
        verbose=args.verbose,
        console=console,
    )
    if result.rows or result.base_rows:
        console.print(results_table(result.rows, spec.metric, result.base_rows))
    status = "complete" if result.complete else "INCOMPLETE"
    console.print(
        f"[bold]sweep {result.name} {status}[/]: {result.finished}/{result.planned} trials finished "
        f"({result.ran} run now, {result.failed} failed) in {result.wall_s:.0f} s"
    )
    console.print("[dim]phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result.phases.items()) + "[/]")
    experiment = schema.experiment_name(result.name)
    for line in where_to_look(result.uri, experiment, result.experiment_id, result.parent_run_id):
        console.print(line)
    if not result.complete:
        console.print(f"resume with: comol sweep {args.spec} --resume")
    return 0 if result.complete else 1
