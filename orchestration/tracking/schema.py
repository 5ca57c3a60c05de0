"""The MLflow layout of a sweep. Writers (orchestration.sweep) and readers (report, promote) import
these names instead of spelling strings, so the two sides cannot drift apart.

- One experiment per sweep, named ``experiment_name(sweep)``.
- One parent run per sweep: tags ROLE=ROLE_SWEEP, SWEEP=<sweep name>.
- One child run per (configuration, seed): tags ROLE=ROLE_TRIAL, SWEEP, CONFIG_ID (hash of the
  resolved trial config without the seed), SEED, METHOD, and mlflow.parentRunId. Its identity is
  (sweep, config_id, seed), so a retried or resumed trial reopens its run instead of duplicating it.
- Params: the resolved trial config flattened with dots (``adapter.r``, ``training.lr``, …): every adapter
  setting under its config field's name, defaults spelled out.
- Metrics: per step ``train/loss``, ``train/lr``, ``train/grad_norm``, ``train/tokens_per_s``,
  ``train/peak_mem_mb``; final ``eval/<dataset>/accuracy``, ``eval/average``, ``eval/humaneval/pass@<k>``,
  ``params/trainable``, ``cost/adapter_flops_per_token``, ``time/train_s``.
- Artifacts: ``adapter/`` (PEFT layout), ``config/trial.yaml`` (the resolved config),
  ``generations/<benchmark>.jsonl``.
- Logged model: the adapter again, as an MLflow Model (pyfunc, ``orchestration.serving``) linked to the run as
  its output, named ``ADAPTER_MODEL``; registry versions point at it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

ROLE = "comol.role"
ROLE_SWEEP = "sweep"
ROLE_TRIAL = "trial"
SWEEP = "comol.sweep"
CONFIG_ID = "config_id"
SEED = "seed"
METHOD = "method"
BASE_MODEL = "base_model"
PARENT_RUN_ID = "mlflow.parentRunId"

METRIC_AVERAGE = "eval/average"
METRIC_TRAINABLE = "params/trainable"
METRIC_FLOPS = "cost/adapter_flops_per_token"
METRIC_TRAIN_TIME = "time/train_s"
ADAPTER_ARTIFACT = "adapter"
# The name of the adapter's logged MLflow Model (``runs:/<run>/model`` loads it). Not ``adapter``: MLflow lists a
# run's logged model of the same name inside that artifact folder, through its default store.
ADAPTER_MODEL = "model"
CONFIG_ARTIFACT = "config/trial.yaml"
GENERATIONS_DIR = "generations"
REPORT_DIR = "report"  # the report's tables and plots, logged on the sweep's parent run

_BAD_METRIC_CHARS = re.compile(r"[^\w./\- :]")


def param(*path: str) -> str:
    """The MLflow param of a trial config field: its dotted path, e.g. ``param("adapter", "r")`` → ``adapter.r``
    (as :func:`flatten` names them)."""
    return ".".join(path)


def metric_key(name: str) -> str:
    """MLflow 3 refuses some characters in metric names ('@' in ``pass@k``): spell them out, stably."""
    return _BAD_METRIC_CHARS.sub(lambda m: "_at_" if m.group() == "@" else "_", name)


def experiment_name(sweep: str) -> str:
    return f"comol-sweep/{sweep}"


def accuracy_metric(dataset: str) -> str:
    return f"eval/{dataset}/accuracy"


def pass_at_metric(k: int) -> str:
    return f"eval/humaneval/pass@{k}"


# Settings that left the trial config, hashed as they were recorded (null) so that configurations keep the ids
# their runs already carry: a sweep resumed across that change finds its finished runs instead of re-running them.
_RETIRED_SETTINGS = {"fault": None}


def config_id(config: Mapping[str, Any]) -> str:
    """A stable short hash of a trial config, ignoring its seed: seeds of one configuration share it."""

    def strip_seed(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: strip_seed(v) for k, v in value.items() if k != "seed"}
        return value

    canonical = json.dumps(strip_seed({**_RETIRED_SETTINGS, **config}), sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config → MLflow params (``a.b.c`` keys, values as strings)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = json.dumps(value) if isinstance(value, (list, tuple, dict)) else str(value)
    return out
