"""The MLflow layout of a sweep. Writers (orchestration.sweep) and readers (report, promote) import
these names instead of spelling strings, so the two sides cannot drift apart.

- One experiment per sweep, named ``experiment_name(sweep)``.
- The experiment carries EXPERIMENT_KIND=EXPERIMENT_KIND_TRAINING, so MLflow's UI opens it on its runs.
- One parent run per sweep: tags ROLE=ROLE_SWEEP, SWEEP=<sweep name>. When the sweep ends it carries, per
  configuration, ``seed_mean/<label>/<metric>`` and ``seed_std/<label>/<metric>`` of the sweep metric and the
  CONFIGURATIONS_TABLE (label → config_id); ``comol report`` adds the report under REPORT_DIR.
- One child run per (configuration, seed): tags ROLE=ROLE_TRIAL, SWEEP, CONFIG_ID (hash of the
  resolved trial config without the seed), SEED, METHOD, mlflow.parentRunId and, once the sweep ends,
  CONFIG_LABEL (labels tell configurations apart only among all of them). Its identity is
  (sweep, config_id, seed), so a retried or resumed trial reopens its run instead of duplicating it.
- One base run per distinct base-model evaluation (model, evaluation options, prompt template, precision): tags
  ROLE=ROLE_BASE, SWEEP, BASE_KEY (``base_key`` of those settings), BASE_MODEL and mlflow.parentRunId; the
  untrained model's ``eval/*`` and ``time/eval_s``, and its generations. It is the reference row of the sweep's
  summary and report; a sweep whose store already holds a FINISHED base run of the same key copies its metrics
  (tag BASE_SOURCE: that run) instead of evaluating again.
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
ROLE_BASE = "base"  # the untrained base model's evaluation: the sweep's reference row
BASE_KEY = "comol.base_key"
BASE_SOURCE = "comol.base_source_run"  # a base run whose metrics were copied from an earlier sweep's
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
CONFIG_LABEL = "config_label"  # tag on trial runs: the configuration's label, so the UI groups its seeds
CONFIGURATIONS_TABLE = "sweep/configurations.json"  # parent run: label → config_id, seeds, seed mean and std
# The experiment tag MLflow's UI reads to open an experiment on its runs (model training), not on GenAI traces.
EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"
# MLflow 3.17's UI opens every experiment in its GenAI mode (the traces overview) unless the link or the
# browser's last choice says otherwise; links the project prints say it.
UI_TRAINING_VIEW = "?workflowType=machine_learning"


def ui_experiment_link(server: str, experiment_id: str) -> str:
    """The experiment's runs table in MLflow's UI at ``server`` (not its GenAI traces overview)."""
    return f"{server.rstrip('/')}/#/experiments/{experiment_id}/runs{UI_TRAINING_VIEW}"


_BAD_METRIC_CHARS = re.compile(r"[^\w./\- :]")


def param(*path: str) -> str:
    """The MLflow param of a trial config field: its dotted path, e.g. ``param("adapter", "r")`` → ``adapter.r``
    (as :func:`flatten` names them)."""
    return ".".join(path)


def metric_key(name: str) -> str:
    """MLflow 3 refuses some characters in metric names ('@' in ``pass@k``): spell them out, stably."""
    return _BAD_METRIC_CHARS.sub(lambda m: "_at_" if m.group() == "@" else "_", name)


def seed_stat_metric(stat: str, label: str, metric: str) -> str:
    """The parent run's per-configuration seed statistic: ``seed_mean/CoMoL r_16 N_8/eval/average``."""
    return metric_key(f"{stat}/{label}/{metric}")


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


def base_key(settings: Mapping[str, Any]) -> str:
    """A stable short hash of what an untrained model's evaluation depends on (model, evaluation, template,
    precision): two sweeps with the same settings share one base evaluation."""
    canonical = json.dumps(dict(settings), sort_keys=True, default=str)
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
