"""``comol params``: trainable parameters and adapter FLOPs of a method on a model config.

Interface (other tools depend on it):
``comol params --model-config PATH --method M [--r R] [--num-experts N] [--no-core-routing] [--alpha A]
[--target-modules q_proj,k_proj,...] [--json]``, plus every other setting of the methods' configs
(``--expert-schedule``, ``--top-k``, ``--aux-loss-coef``, ...). A flag is a config field's name (``_`` as
``-``); the fields' aliases are flags too (``--rank``, ``--experts``, ``--targets``). A flag whose setting the
method's config lacks is an error, and an error names the flag as it was typed.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "params"
HELP = "count trainable parameters and adapter FLOPs/token of a method on a model config (meta device)"


class _SettingFlag(argparse.Action):
    """Stores a setting's value and remembers the spelling the user typed (errors name that spelling)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
        namespace.spelled = {**(namespace.spelled or {}), self.dest: option_string}


def _flag(name: str, negated: bool) -> str:
    return ("--no-" if negated else "--") + name.replace("_", "-")


def _help(per_method: dict[str, Any]) -> str:
    """The setting's help text; where methods describe it differently, each method's own text."""
    by_text: dict[str, list[str]] = {}
    for method, setting in per_method.items():
        by_text.setdefault(setting.help, []).append(method)
    if len(by_text) == 1:
        return next(iter(by_text))
    return " | ".join(f"{', '.join(methods)}: {text}" for text, methods in by_text.items())


def _list_of_names(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting of any method (and one per alias), derived from the config dataclasses."""
    from comol.methods import all_settings

    parser.set_defaults(spelled={})
    for name, per_method in all_settings().items():
        setting = next(iter(per_method.values()))
        kind = setting.scalar
        if kind is bool:  # a switch away from the default
            negated = bool(setting.default)
            flags = [_flag(spelling, negated) for spelling in setting.spellings]
            text = f"sets {name} to {str(not negated).lower()}. {_help(per_method)}"
            parser.add_argument(
                *flags, dest=name, action=_SettingFlag, nargs=0, const=not negated, default=None, help=text
            )
            continue
        if kind is None:  # lists: comma-separated, each item checked by the config
            options: dict[str, Any] = {"type": _list_of_names, "metavar": "A,B,..."}
        else:
            options = {"type": kind, "metavar": name.upper()}
        flags = [_flag(spelling, False) for spelling in setting.spellings]
        parser.add_argument(*flags, dest=name, action=_SettingFlag, default=None, help=_help(per_method), **options)


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
    add_setting_flags(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def adapter_config(method_name: str, values: dict[str, Any], spelled: dict[str, str]):
    """The method's config from the settings given on the command line; errors name the flag as typed."""
    from comol.errors import ConfigError
    from comol.methods import get_method

    method = get_method(method_name)
    known = method.config_cls.settings()
    for name, flag in spelled.items():
        if name not in known:
            raise ConfigError(flag, f"is not used by method {method_name!r}")
    try:
        return method.config_cls(**{name: values[name] for name in spelled})
    except ConfigError as err:
        if err.field not in spelled:
            raise
        raise err.renamed(spelled[err.field]) from None


def run(args: argparse.Namespace) -> int:
    from comol.accounting import cost_of
    from comol.errors import ConfigError
    from comol.model_configs import load_model_config_dict, resolve_model_config

    adapter = adapter_config(args.method, vars(args), args.spelled)
    model_config = load_model_config_dict(args.model_config)
    try:
        cost = cost_of(model_config, adapter)
    except ConfigError as err:  # a key of the model's config.json: say which file it is in
        if err.field in adapter.settings():
            raise
        raise err.renamed(f"model-config {resolve_model_config(args.model_config)}: {err.field}") from None
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
