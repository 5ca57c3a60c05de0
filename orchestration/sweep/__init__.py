"""Sweeps: a YAML spec → validated trial configs → Ray Tune trials (Train V2 inside) → one MLflow run each.

Modules: ``axes`` (what a sweep may vary, derived from the configs), ``spec`` (the YAML schema), ``space``
(grid/Optuna → trial configs), ``trainable`` (the Tune function trainable), ``search`` (persisted Optuna),
``progress`` (terminal), ``runner`` (the sweep), ``train_entry`` / ``smoke`` (trial bodies).
"""
