"""Library-level CLI commands (no Ray, no MLflow). The ``comol`` entry point lives in orchestration.cli.

Each command module defines ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``,
and imports anything heavy inside ``run`` so that ``comol --help`` stays fast.
"""
