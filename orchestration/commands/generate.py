"""``comol generate --model models:/NAME@champion --prompt TEXT``: a greedy completion from a registered adapter.

Interface: ``comol generate --model URI --prompt TEXT [--max-new-tokens N] [--tracking-uri URI]``.
The prompt is wrapped in the template the adapter was trained with (recorded with it: Alpaca unless the training
config's ``data.prompt_template`` said otherwise); only the completion is printed.
"""

from __future__ import annotations

import argparse

NAME = "generate"
HELP = "print a greedy completion of a prompt by a registered adapter (models:/NAME@ALIAS)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/ID/adapter")
    parser.add_argument("--prompt", required=True, help="the instruction (wrapped in the adapter's prompt template)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="completion length limit (default 128)")
    from orchestration.tracking.store import DEFAULT_DESCRIPTION

    parser.add_argument("--tracking-uri", default=None, help=f"MLflow tracking URI (default: {DEFAULT_DESCRIPTION})")


def run(args: argparse.Namespace) -> int:
    from comol.errors import ConfigError
    from orchestration.registry.generation import complete
    from orchestration.registry.loading import load_registered_adapter

    if args.max_new_tokens < 1:
        raise ConfigError("max-new-tokens", f"must be at least 1, got {args.max_new_tokens}")
    loaded = load_registered_adapter(args.model, tracking_uri=args.tracking_uri)
    print(complete(loaded.model, loaded.tokenizer, args.prompt, args.max_new_tokens, loaded.prompt_template))
    return 0
