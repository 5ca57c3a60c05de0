"""From a validated spec to concrete trials: the grid product, the Optuna space, and per-trial configs.

Every trial config passes through the training engineer's ``TrainConfig`` (and so through the adapter
library) here, in the driver, before Ray starts: a method × axis combination a method does not support,
or a value a method rejects, fails with the spec field that caused it.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from comol.errors import ConfigError
from comol.methods import get_method
from orchestration.sweep.spec import AXES, FloatRange, SweepSpec
from orchestration.tracking import schema

# Where each axis lands in the training config (orchestration.training.config.TrainConfig).
AXIS_PATHS: dict[str, tuple[str, ...]] = {
    "method": ("method",),
    "rank": ("adapter", "r"),
    "experts": ("adapter", "num_experts"),
    "core_routing": ("adapter", "core_routing"),
    "alpha": ("adapter", "alpha"),
    "alpha_multiplier": ("adapter", "alpha"),
    "lr": ("training", "lr"),
}
SEED_PATH = ("training", "seed")
GENERATIONS_FILE = "generations.jsonl"
# Set per trial by the sweep; not part of a configuration's identity.
RUN_FIELDS = ("name", "run_name", "output_dir")  # (and evaluation.options.generations_path)
MAX_OPTUNA_COMBINATIONS = 4096


@dataclass(frozen=True)
class TrialPlan:
    """One (configuration, seed): the resolved training config and its deterministic identity."""

    config_id: str
    seed: int
    method: str
    point: dict[str, Any]
    train: dict[str, Any]
    run_name: str

    @property
    def key(self) -> str:
        return f"{self.config_id}-s{self.seed}"


@dataclass
class SweepPlan:
    spec: SweepSpec
    trials: list[TrialPlan] = field(default_factory=list)  # grid: every (configuration, seed)
    configurations: int = 0
    corners: list[TrialPlan] = field(default_factory=list)  # Optuna: every corner checked (first seed)

    @property
    def kind(self) -> str:
        return self.spec.search.kind


def _set(config: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = config
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError("train." + ".".join(path[:-1]), f"must be a mapping, got {type(child).__name__}")
        node = child
    node[path[-1]] = value


def _method_fields(method: str, where: str) -> set[str]:
    try:
        return set(get_method(method).config_cls.field_help())
    except ConfigError as err:
        raise ConfigError(where, f"unknown method {method!r}", allowed=err.allowed) from None


def _resolved(train_config: Any) -> dict[str, Any]:
    """The validated config as plain data, with the adapter fully spelled out (defaults included).

    Spelling defaults out makes identical configurations hash identically however they were written.
    """
    data = train_config.model_dump(mode="json")
    adapter = train_config.adapter_config().to_dict()
    for key in ("method", "base_model_name_or_path"):
        adapter.pop(key, None)
    data["adapter"] = adapter
    return data


def validate_train(config: dict[str, Any], prefix: str = "train") -> Any:
    """``TrainConfig.from_dict`` with the error's field prefixed by where it sits in the spec."""
    from orchestration.training.config import TrainConfig

    try:
        return TrainConfig.from_dict(config)
    except ConfigError as err:
        text = str(err).removeprefix(f"{err.field}: ")
        if err.allowed is not None:
            text = text.removesuffix(f" (allowed: {', '.join(map(str, err.allowed))})")
        raise ConfigError(f"{prefix}.{err.field}", text, allowed=err.allowed) from None


def resolve_trial(
    spec: SweepSpec, point: Mapping[str, Any], seed: int, where: Mapping[str, str], train_dir: str
) -> TrialPlan:
    """Base config + axis values + seed → a validated TrialPlan. ``where`` names each axis's spec field."""
    base = copy.deepcopy(spec.train)
    method = point.get("method", base.get("method", "comol"))
    method_where = where.get("method", "train.method")
    fields = _method_fields(method, method_where)
    for key in (base.get("adapter") or {}) if isinstance(base.get("adapter"), dict) else {}:
        if key not in fields:
            raise ConfigError(
                f"train.adapter.{key}",
                f"is not a setting of method {method!r} (chosen by {method_where}); set it in the search "
                "for the methods that have it instead of in the base config",
                allowed=sorted(fields - {"base_model_name_or_path"}),
            )
    config = base
    extra = point.get("adapter") or {}
    for key, value in extra.items():
        axis = next((a for a in AXES if AXIS_PATHS[a] == ("adapter", key)), None)
        if axis is not None:
            raise ConfigError(f"{where['adapter']}.{key}", f"is an axis: set it as {axis!r} instead")
        if key not in fields or key in ("base_model_name_or_path",):
            raise ConfigError(
                f"{where['adapter']}.{key}",
                f"is not a setting of method {method!r}",
                allowed=sorted(fields - {"base_model_name_or_path"}),
            )
        _set(config, ("adapter", key), value)
    for axis in AXES:
        if axis not in point:
            continue
        path = AXIS_PATHS[axis]
        if path[0] == "adapter" and path[-1] not in fields:
            supported = [a for a in AXES if AXIS_PATHS[a][0] != "adapter" or AXIS_PATHS[a][-1] in fields]
            raise ConfigError(where[axis], f"is not a setting of method {method!r}", allowed=supported)
        value = point[axis]
        if axis == "alpha_multiplier":
            rank = point.get("rank", (base.get("adapter") or {}).get("r"))
            if rank is None:
                rank = get_method(method).config_cls().r
            value = float(value) * rank
        _set(config, path, value)
    _set(config, SEED_PATH, seed)
    for key in RUN_FIELDS:
        config.pop(key, None)
    prefix = "train"
    touched = [a for a in point if a in where and a in AXIS_PATHS]
    try:
        validated = validate_train(config, prefix)
    except ConfigError as err:
        # A bad value that came from an axis is that axis's fault: name the spec field the user wrote.
        for axis in touched:
            path = ".".join(AXIS_PATHS[axis])
            if err.field in (f"train.{path}", f"train.{AXIS_PATHS[axis][0]}"):
                message = str(err).removeprefix(f"{err.field}: ")
                raise ConfigError(where[axis], f"{message} (as {path})") from None
        if "adapter" in where and err.field.removeprefix("train.adapter.") in extra:
            message = str(err).removeprefix(f"{err.field}: ")
            raise ConfigError(f"{where['adapter']}.{err.field.removeprefix('train.adapter.')}", message) from None
        raise
    resolved = _resolved(validated)
    identity = {k: v for k, v in resolved.items() if k not in RUN_FIELDS}
    config_id = schema.config_id(identity)
    run_name = f"{spec.name}-{config_id}-s{seed}"
    resolved.update(name=spec.name, run_name=run_name, output_dir=train_dir)
    if resolved.get("evaluation"):
        # Where rank 0 of the evaluation hook writes the generations: per trial, never shared between trials.
        # Remote storage (s3://) cannot be written as a file: then a node-local path, which the trial driver
        # reads when it shares rank 0's node (see train_entry.split_generations).
        folder = f"{train_dir}/{run_name}" if "://" not in train_dir else f"/tmp/comol-generations/{run_name}"
        options = resolved["evaluation"].setdefault("options", {})
        options["generations_path"] = f"{folder}/{GENERATIONS_FILE}"
    return TrialPlan(config_id, seed, method, dict(point), resolved, run_name)


def grid_points(spec: SweepSpec) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """The grid product as (axis values, spec field of each value) pairs."""
    grid = spec.search.grid
    assert grid is not None
    axes = grid.axes()
    variants = [(v.assigned(), i) for i, v in enumerate(grid.variants)] if grid.variants else [({}, None)]
    points = []
    for variant, index in variants:
        for values in itertools.product(*axes.values()):
            point = {**variant, **dict(zip(axes, values, strict=True))}
            where = {a: f"search.grid.{a}" for a in axes}
            where.update({a: f"search.grid.variants[{index}].{a}" for a in variant})
            points.append((point, where))
    return points


def plan_grid(spec: SweepSpec, train_dir: str) -> SweepPlan:
    plan = SweepPlan(spec)
    seen: dict[str, dict[str, Any]] = {}
    for point, where in grid_points(spec):
        first = resolve_trial(spec, point, spec.seeds[0], where, train_dir)
        if first.config_id in seen:
            raise ConfigError(
                "search.grid",
                f"{point} and {seen[first.config_id]} resolve to the same trial config ({first.config_id}); "
                "remove one (an axis a method ignores would run it twice)",
            )
        seen[first.config_id] = point
        plan.trials.append(first)
        plan.trials.extend(resolve_trial(spec, point, seed, where, train_dir) for seed in spec.seeds[1:])
    plan.configurations = len(seen)
    return plan


# --- Optuna ---------------------------------------------------------------------------------------
def _methods(spec: SweepSpec) -> list[str]:
    space = spec.search.optuna.space
    return list(space.method) if space.method else [spec.train.get("method", "comol")]


def applicable_axes(spec: SweepSpec, method: str) -> list[str]:
    """The space's axes that this method has (``method`` itself excluded)."""
    fields = _method_fields(method, "search.optuna.space.method")
    axes = spec.search.optuna.space.axes()
    return [a for a in axes if a != "method" and (AXIS_PATHS[a][0] != "adapter" or AXIS_PATHS[a][-1] in fields)]


def suggest_point(spec: SweepSpec, trial: Any) -> dict[str, Any]:
    """Optuna define-by-run: the method first, then only the axes that method has (conditional space)."""
    space = spec.search.optuna.space
    methods = _methods(spec)
    point: dict[str, Any] = {}
    method = trial.suggest_categorical("method", methods) if space.method else methods[0]
    if space.method:
        point["method"] = method
    for axis in applicable_axes(spec, method):
        domain = getattr(space, axis)
        if isinstance(domain, FloatRange):
            point[axis] = trial.suggest_float(axis, domain.low, domain.high, log=domain.log)
        else:
            point[axis] = trial.suggest_categorical(axis, list(domain))
    return point


def _corners(domain: Any) -> list[Any]:
    return [domain.low, domain.high] if isinstance(domain, FloatRange) else list(domain)


def plan_optuna(spec: SweepSpec, train_dir: str) -> SweepPlan:
    """Check every categorical combination (and both ends of each range) for every method in the space."""
    space = spec.search.optuna.space
    methods = _methods(spec)
    used: set[str] = set()
    corners: list[TrialPlan] = []
    for method in methods:
        axes = applicable_axes(spec, method)
        used.update(axes)
        domains = [_corners(getattr(space, a)) for a in axes]
        for values in itertools.product(*domains):
            point = dict(zip(axes, values, strict=True))
            if space.method:
                point["method"] = method
            where = {a: f"search.optuna.space.{a}" for a in point}
            corners.append(resolve_trial(spec, point, spec.seeds[0], where, train_dir))
            if len(corners) > MAX_OPTUNA_COMBINATIONS:
                raise ConfigError(
                    "search.optuna.space", f"more than {MAX_OPTUNA_COMBINATIONS} categorical combinations to check"
                )
    unused = [a for a in space.axes() if a != "method" and a not in used]
    if unused:
        raise ConfigError(
            f"search.optuna.space.{unused[0]}", f"is not a setting of any method in the space ({', '.join(methods)})"
        )
    return SweepPlan(spec, [], spec.search.optuna.num_samples, corners)


def plan(spec: SweepSpec, train_dir: str) -> SweepPlan:
    """Expand and validate every trial of the sweep (grid) or every corner of its space (Optuna)."""
    return plan_grid(spec, train_dir) if spec.search.kind == "grid" else plan_optuna(spec, train_dir)
