"""``comol report SWEEP``: seed-aggregated tables (terminal, Markdown, CSV, LaTeX), significance and plots.

Interface: ``comol report SWEEP [--tracking-uri URI] [--out DIR] [--reference lora] [--no-log]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "report"
HELP = "tables (mean ± sample std over seeds), significance tests and plots of a sweep, read from MLflow"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", metavar="SWEEP", help="the sweep's name (its MLflow experiment is comol-sweep/SWEEP)")
    from orchestration.tracking.store import DEFAULT_DESCRIPTION

    parser.add_argument("--tracking-uri", default=None, help=f"MLflow tracking URI (default: {DEFAULT_DESCRIPTION})")
    parser.add_argument("--out", type=Path, default=None, help="folder for the files (default: outputs/reports/SWEEP)")
    parser.add_argument(
        "--reference",
        default=None,
        help="row to test every configuration against: a method (its best row), a row label or a config_id "
        "(default: lora when the sweep has it)",
    )
    parser.add_argument("--no-log", action="store_true", help="write the files only; do not log them on the parent run")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from orchestration.report import run_report
    from orchestration.report.render import rich_tables

    output = run_report(args.sweep, args.tracking_uri, args.out, args.reference, log=not args.no_log)
    console = Console()
    console = Console(width=max(console.width, 150))  # the table is wide; piped output must not wrap it
    console.print(rich_tables(output.report))
    console.print(f"files: {output.directory}/ ({', '.join(p.name for p in output.files)})")
    if output.logged_to:
        console.print(f"logged as artifacts report/ of the sweep's parent run {output.logged_to}")
    return 0
