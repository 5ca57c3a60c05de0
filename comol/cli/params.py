"""``comol params``: trainable parameters and adapter FLOPs of a method on a model config.

Interface (other tools depend on it):
``comol params --model-config PATH --method M [--rank R] [--experts N] [--no-core-routing]
[--alpha A] [--targets q_proj,k_proj,...] [--json]``, plus method-specific ``--expert-schedule``,
``--top-k`` and ``--aux-loss-coef``. A flag whose field the method's config lacks is an error.
"""

from __future__ import annotations

import argparse
import json

NAME = "params"
HELP = "count trainable parameters and adapter FLOPs/token of a method on a model config (meta device)"

# CLI flag → config field; a flag the method's config lacks is an error, never ignored.
FLAG_FIELDS = {
    "rank": "r",
    "experts": "num_experts",
    "core_routing": "core_routing",
    "alpha": "alpha",
    "expert_schedule": "expert_schedule",
    "top_k": "top_k",
    "aux_loss_coef": "aux_loss_coef",
}
FLAG_NAMES = {
    "rank": "--rank",
    "experts": "--experts",
    "core_routing": "--no-core-routing",
    "alpha": "--alpha",
    "expert_schedule": "--expert-schedule",
    "top_k": "--top-k",
    "aux_loss_coef": "--aux-loss-coef",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from comol.methods import METHODS
    from comol.model_configs import SHIPPED

    parser.add_argument(
        "--model-config",
        required=True,
        metavar="PATH",
        help=f"a Hugging Face config.json (or its folder), or a shipped name: {', '.join(SHIPPED)}",
    )
    parser.add_argument("--method", required=True, choices=sorted(METHODS), help="adapter method")
    parser.add_argument("--rank", type=int, default=None, help="rank r (default 16)")
    parser.add_argument("--experts", type=int, default=None, help="number of experts N (default 8)")
    parser.add_argument(
        "--no-core-routing",
        dest="core_routing",
        action="store_const",
        const=False,
        default=None,
        help="CoMoL: route on x (router N×n) instead of the core-space A·x",
    )
    parser.add_argument("--alpha", type=float, default=None, help="scale numerator, scale = alpha/r (default r)")
    parser.add_argument(
        "--expert-schedule",
        default=None,
        metavar="N1,N2,...",
        help="MoLA: expert counts by depth group, e.g. 2,4,6,8 (by quarter); replaces --experts",
    )
    parser.add_argument(
        "--top-k", type=int, default=None, help="MoLA: experts per token (default 2); FlyLoRA: rank components kept"
    )
    parser.add_argument(
        "--aux-loss-coef", type=float, default=None, help="MoLA, AdaMoLE: load-balancing loss weight (default 1e-3)"
    )
    parser.add_argument(
        "--targets",
        default="q_proj,k_proj,v_proj,o_proj,down_proj",
        help="comma-separated Linear leaf names to adapt",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _adapter_config(args: argparse.Namespace):
    from comol.errors import ConfigError
    from comol.methods import get_method

    method = get_method(args.method)
    known = set(method.config_cls.field_help())
    fields: dict[str, object] = {"r": 16}
    for flag, name in FLAG_FIELDS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if name not in known:
            raise ConfigError(FLAG_NAMES[flag], f"is not used by method {args.method!r}")
        fields[name] = value
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    return method.config_cls(target_modules=targets, **fields)


def run(args: argparse.Namespace) -> int:
    from comol.accounting import cost_of
    from comol.model_configs import load_model_config_dict, resolve_model_config

    adapter = _adapter_config(args)
    model_config = load_model_config_dict(args.model_config)
    cost = cost_of(model_config, adapter)
    report = {
        "model_config": str(resolve_model_config(args.model_config)),
        "method": adapter.method,
        "adapter": adapter.to_dict(),
        "trainable": cost.trainable,
        "base": cost.base,
        "trainable_percent": round(cost.trainable_percent, 6),
        "per_target": cost.per_target,
        "adapted_modules": cost.adapted_modules,
        "adapter_flops_per_token": cost.adapter_flops_per_token,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{adapter.method} on {args.model_config}", show_footer=True)
    table.add_column("target", footer="total trainable")
    table.add_column("trainable params", justify="right", footer=f"{cost.trainable:,}")
    for name, count in cost.per_target.items():
        table.add_row(name, f"{count:,}")
    console = Console()
    console.print(table)
    console.print(
        f"base parameters {cost.base:,} · trainable {cost.trainable / 1e6:.2f} M "
        f"({cost.trainable_percent:.3f}% of base) · {cost.adapted_modules} adapted modules · "
        f"adapter forward FLOPs/token {cost.adapter_flops_per_token:,}"
    )
    return 0
