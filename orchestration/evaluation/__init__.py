"""Evaluation: math accuracy by the reference rules, HumanEval pass@k in a sandbox, batched generation.

Submodules are imported on demand so that scoring and the sandbox never pull in torch:
``math_scoring``, ``passk``, ``sandbox``, ``humaneval`` (no torch); ``generation``, ``benchmarks`` (torch).
No Ray or MLflow here: callers (the training loop, the CLI) do the logging.
"""
