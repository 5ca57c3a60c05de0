"""The ``comol`` command: one entry point, one module per subcommand.

Library commands live in ``comol.cli``; distributed ones in ``orchestration.commands``. Bad input
(a ``ConfigError``, a missing file) ends with a one-line message naming the field and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = [
    "comol.cli.params",
    "orchestration.commands.train",
    "orchestration.commands.sweep",
    "orchestration.commands.score",
    "orchestration.commands.report",
    "orchestration.commands.promote",
    "orchestration.commands.generate",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="comol", description="Fine-tune and ablate CoMoL adapters (Core Space Mixture of LoRA)."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from comol.errors import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (ConfigError, FileNotFoundError) as err:
        print(f"comol {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
