"""The ``comol`` command: one entry point, one module per subcommand.

Library commands live in ``comol.cli``; distributed ones in ``orchestration.commands``. This is the one error
boundary: bad input (an ``InputError`` from any layer, a missing file) ends with one paragraph naming the field or
file and exit code 2; any other exception is reported in one paragraph with exit code 1. A researcher never gets a
traceback unless they ask for it with ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
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
    parser.add_argument("--debug", action="store_true", help="on an error, print the traceback too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        # Also after the command name; SUPPRESS keeps the top-level default when it is not given here.
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from comol.errors import InputError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (InputError, FileNotFoundError, IsADirectoryError, NotADirectoryError) as err:
        _report(args, str(err))
        return 2
    except KeyboardInterrupt:
        _report(args, "interrupted")
        return 130
    except Exception as err:  # a fault of the program, not of the input: still one paragraph, and how to see more
        _report(args, f"unexpected {type(err).__name__}: {err}", hint=True)
        return 1


def _report(args: argparse.Namespace, message: str, hint: bool = False) -> None:
    """One paragraph on stderr (the traceback first with ``--debug``)."""
    if args.debug:
        traceback.print_exc()
    elif hint:
        message += " (run again with --debug for the traceback)"
    print(f"comol {args.command}: error: {' '.join(message.split())}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
