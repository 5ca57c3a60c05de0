"""What a planned trial costs before anything runs: comol's accounting on the meta device, from the model's config.

One owner for "which config.json describes this model": a local model folder's own, else the shipped config of
the paper's base models (so ``Qwen/Qwen3-8B`` is counted offline), else the hub's. The sweep records these
numbers on every trial run, and ``comol sweep --dry-run --json`` prints them before launching anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from comol.accounting import AdapterCost
from comol.errors import ConfigError
from comol.model_configs import SAME_SHAPES, SHIPPED, shipped_config
from comol.user_files import read_json
from orchestration.sweep.space import SweepPlan, TrialPlan

# Keys that describe how the weights were stored or trained, not the shapes: the meta model ignores them.
_NOT_SHAPES = ("architectures", "quantization_config", "_name_or_path")


def model_config(model: str) -> tuple[dict[str, Any], str]:
    """The model's config as a dict and where it came from (a file path, or the hub id)."""
    from orchestration.models import resolve_model

    model = resolve_model(model)
    local = Path(model) / "config.json"
    shipped = shipped_config(model)
    if local.is_file():
        config, source = read_json(local, "model config"), str(local)
    elif shipped is not None:  # the paper's models ship their config.json with comol: no download
        config, source = read_json(shipped, "model config"), str(shipped)
    else:  # any other hub id: its config, as from_pretrained will fetch it for training anyway
        from transformers import AutoConfig

        try:
            config, source = AutoConfig.from_pretrained(model).to_dict(), model
        except OSError as err:
            names = ", ".join([*SHIPPED, *SAME_SHAPES])
            raise ConfigError(
                "train.model",
                f"{model!r} has no config.json to count its parameters from: it is not a local model folder, "
                f"not a shipped config ({names}), and the hub did not give one ({str(err).splitlines()[0]})",
            ) from None
    return {k: v for k, v in config.items() if k not in _NOT_SHAPES}, source


def trial_cost(plan: TrialPlan, config: dict[str, Any] | None = None) -> AdapterCost:
    """Trainable parameters and adapter FLOPs/token of a planned trial (``config``: the model's, if read)."""
    from comol.accounting import cost_of

    return cost_of(config if config is not None else model_config(plan.train.model)[0], plan.train.adapter)


def configuration_row(plan: TrialPlan, cost: AdapterCost) -> dict[str, Any]:
    """One planned configuration as ``--dry-run --json`` prints it: its axes, then what it costs."""
    adapter = plan.train.model_dump(mode="json")["adapter"]
    return {
        "config_id": plan.config_id,
        "method": plan.method,
        "r": adapter.get("r"),
        "num_experts": adapter.get("num_experts") or adapter.get("expert_schedule"),
        "core_routing": adapter.get("core_routing"),
        "alpha": adapter.get("alpha"),
        "lr": plan.train.training.lr,
        "trainable": cost.trainable,
        "trainable_percent": round(cost.trainable_percent, 6),
        "adapter_flops_per_token": cost.adapter_flops_per_token,
        "adapted_modules": cost.adapted_modules,
        "adapter": adapter,
    }


def sweep_cost(sweep_plan: SweepPlan, sweep_dir: str) -> dict[str, Any]:
    """Everything a user should see before launching a sweep: per planned configuration (grid) or per corner
    of the space (Optuna), its axes and trainable parameters, counted on the meta device."""
    spec = sweep_plan.spec
    grid = sweep_plan.kind == "grid"
    first = {}
    for plan in sweep_plan.trials if grid else sweep_plan.corners:
        first.setdefault(plan.config_id, plan)  # a grid lists every seed: one row per configuration
    model = sweep_plan.example.train.model
    config, source = model_config(model)
    costs: dict[str, AdapterCost] = {}
    rows = []
    for plan in first.values():
        key = json.dumps([plan.method, plan.train.model_dump(mode="json")["adapter"]], sort_keys=True)
        if key not in costs:  # lr and the seed do not change the count; each adapter is counted once
            costs[key] = trial_cost(plan, config)
        rows.append(configuration_row(plan, costs[key]))
    out: dict[str, Any] = {
        "sweep": spec.name,
        "kind": sweep_plan.kind,
        "model": model,
        "model_config": source,
        "seeds": spec.seeds,
        "configurations": sweep_plan.configurations,
        "trials": sweep_plan.configurations * len(spec.seeds),
        "sweep_dir": sweep_dir,
    }
    if grid:
        out["planned"] = rows
    else:
        out["corners"] = rows
        out["note"] = (
            f"Optuna samples {sweep_plan.configurations} configurations during the sweep, so they cannot be listed "
            "before it runs. Listed instead: every corner of the space (each combination of the categorical axes, "
            "both ends of each range), the configurations Optuna's samples are drawn between; lr and alpha do not "
            "change the parameter count."
        )
    return out
