"""From a validated spec to concrete trials: the grid product, the Optuna space, and per-trial configs.

Every trial config passes through ``TrainConfig`` (and so through the adapter library) here, in the driver,
before Ray starts: a method × axis combination a method does not support, or a value a method rejects, fails
with the spec field that caused it, spelled as the user wrote it. A trial then carries its validated, frozen
``TrainConfig``: nothing downstream validates it again.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from comol.errors import ConfigError
from comol.methods import get_method
from orchestration.sweep.axes import AXES, METHOD, MULTIPLIER, Axis
from orchestration.sweep.spec import FloatRange, SweepSpec
from orchestration.tracking import schema
from orchestration.training.config import TrainConfig

SEED_PATH = ("training", "seed")
GENERATIONS_FILE = "generations.jsonl"
# Set per trial by the sweep; not part of a configuration's identity.
RUN_FIELDS = ("name", "run_name", "output_dir")
MAX_OPTUNA_COMBINATIONS = 4096


@dataclass(frozen=True)
class TrialPlan:
    """One (configuration, seed): the validated training config and its deterministic identity."""

    config_id: str
    seed: int
    method: str
    point: dict[str, Any]  # the axis values that made this configuration, by axis name
    train: TrainConfig
    run_name: str

    @property
    def key(self) -> str:
        return f"{self.config_id}-s{self.seed}"


@dataclass
class SweepPlan:
    spec: SweepSpec
    example: TrialPlan  # the first trial resolved: what every trial shares (resources, model, entry)
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


def method_settings(method: str, where: str) -> dict[str, Any]:
    """The method's settings (by name); an unknown method is an error of the spec field that named it."""
    try:
        return get_method(method).config_cls.settings()
    except ConfigError as err:
        raise ConfigError(where, f"unknown method {method!r}", allowed=err.allowed) from None


def takes(axis: Axis, settings: Mapping[str, Any]) -> bool:
    """Whether a method with these settings has the axis (method-independent axes: always)."""
    return axis.setting is None or axis.setting in settings


# --- resolving one trial, step by step -------------------------------------------------------------
def _check_base_adapter(base: Mapping[str, Any], method: str, settings: Mapping[str, Any], method_where: str) -> None:
    """The base config's adapter settings must all belong to the trial's method."""
    adapter = base.get("adapter")
    for key in adapter if isinstance(adapter, dict) else {}:
        if key not in settings:
            raise ConfigError(
                f"train.adapter.{key}",
                f"is not a setting of method {method!r} (chosen by {method_where}); set it in the search "
                "for the methods that have it instead of in the base config",
                allowed=sorted(settings),
            )


def _apply_variant_adapter(
    config: dict[str, Any],
    extra: Mapping[str, Any],
    point: Mapping[str, Any],
    method: str,
    settings: Mapping,
    where: str,
) -> None:
    """A variant's ``adapter:`` mapping: settings of its method that its axes do not set already."""
    for key, value in extra.items():
        if key not in settings:
            raise ConfigError(f"{where}.{key}", f"is not a setting of method {method!r}", allowed=sorted(settings))
        if key in point:
            raise ConfigError(f"{where}.{key}", "is also set as an axis of this variant: set it in one place")
        _set(config, ("adapter", key), value)


def _apply_axes(
    config: dict[str, Any], point: Mapping[str, Any], method: str, settings: Mapping, where: Mapping[str, str]
) -> None:
    """Each axis value where it lands in the training config (alpha_multiplier: alpha = m × r)."""
    for name, value in point.items():
        axis = AXES.get(name)
        if axis is None:
            continue
        if not takes(axis, settings):
            supported = [a for a in AXES if takes(AXES[a], settings)]
            raise ConfigError(where[name], f"is not a setting of method {method!r}", allowed=supported)
        if name == MULTIPLIER:
            rank = point.get("r", (config.get("adapter") or {}).get("r"))
            value = float(value) * (get_method(method).config_cls().r if rank is None else rank)
        _set(config, axis.path, value)


def _validated(config: dict[str, Any], point: Mapping[str, Any], where: Mapping[str, str]) -> TrainConfig:
    """``TrainConfig.from_dict``; a bad value that came from the spec's search is named by its spec field."""
    try:
        return TrainConfig.from_dict(config)
    except ConfigError as err:
        raise _spec_error(err, point, where) from None


def _spec_error(err: ConfigError, point: Mapping[str, Any], where: Mapping[str, str]) -> ConfigError:
    """A training-config error renamed to where its value came from: an axis, a variant's adapter, or train."""
    for name in point:
        axis = AXES.get(name)
        if axis is not None and name in where and err.field in (".".join(axis.path), axis.path[0]):
            return ConfigError(where[name], f"{err.message} (as {'.'.join(axis.path)})")
    setting = err.field.removeprefix("adapter.")
    if "adapter" in where and err.field.startswith("adapter.") and setting in (point.get("adapter") or {}):
        return ConfigError(f"{where['adapter']}.{setting}", err.message)
    return err.renamed(f"train.{err.field}")


def _identity(config: TrainConfig) -> str:
    """The configuration's config_id: its validated config without the per-run fields (and without the seed)."""
    dump = config.model_dump(mode="json")
    return schema.config_id({k: v for k, v in dump.items() if k not in RUN_FIELDS})


def _generations_path(train_dir: str, run_name: str) -> str:
    """Where rank 0 of the evaluation hook writes the generations: per trial, never shared between trials. Remote
    storage (s3://) cannot be written as a file: then a node-local path, which the trial driver reads when it
    shares rank 0's node (see train_entry.split_generations)."""
    folder = f"{train_dir}/{run_name}" if "://" not in train_dir else f"/tmp/comol-generations/{run_name}"
    return f"{folder}/{GENERATIONS_FILE}"


def resolve_trial(
    spec: SweepSpec, point: Mapping[str, Any], seed: int, where: Mapping[str, str], train_dir: str
) -> TrialPlan:
    """Base config + axis values (by axis name) + seed → a validated TrialPlan. ``where`` names each axis's spec
    field as the user wrote it (and ``adapter``: where a variant's adapter mapping sits)."""
    config = copy.deepcopy(spec.train)
    method = point.get(METHOD, config.get("method", "comol"))
    method_where = where.get(METHOD, "train.method")
    settings = method_settings(method, method_where)
    _check_base_adapter(config, method, settings, method_where)
    _apply_variant_adapter(config, point.get("adapter") or {}, point, method, settings, where.get("adapter", ""))
    _apply_axes(config, point, method, settings, where)
    _set(config, SEED_PATH, seed)
    for key in RUN_FIELDS:
        config.pop(key, None)
    validated = _validated(config, point, where)
    config_id = _identity(validated)
    run_name = f"{spec.name}-{config_id}-s{seed}"
    train = validated.for_run(
        name=spec.name, run_name=run_name, output_dir=train_dir, generations_path=_generations_path(train_dir, run_name)
    )
    return TrialPlan(config_id, seed, method, dict(point), train, run_name)


# --- the grid --------------------------------------------------------------------------------------
def grid_points(spec: SweepSpec) -> list[tuple[dict[str, Any], dict[str, str]]]:
    """The grid product as (point by axis name, spec field of each value as written) pairs."""
    grid = spec.search.grid
    assert grid is not None
    axes = grid.axes()
    variants = [(v, i) for i, v in enumerate(grid.variants)] if grid.variants else [(None, None)]
    points = []
    for variant, index in variants:
        assigned = variant.assigned() if variant is not None else {}
        for values in itertools.product(*axes.values()):
            point = {**assigned, **dict(zip(axes, values, strict=True))}
            where = {a: f"search.grid.{grid.spelled(a)}" for a in axes}
            if variant is not None:
                where.update({a: f"search.grid.variants[{index}].{variant.spelled(a)}" for a in assigned})
            points.append((point, where))
    return points


def plan_grid(spec: SweepSpec, train_dir: str) -> SweepPlan:
    trials: list[TrialPlan] = []
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
        trials.append(first)
        trials.extend(resolve_trial(spec, point, seed, where, train_dir) for seed in spec.seeds[1:])
    return SweepPlan(spec, trials[0], trials, len(seen))


# --- Optuna ----------------------------------------------------------------------------------------
def _methods(spec: SweepSpec) -> list[str]:
    space = spec.search.optuna.space
    return list(space.method) if space.method else [spec.train.get("method", "comol")]


def applicable_axes(spec: SweepSpec, method: str) -> list[str]:
    """The space's axes that this method has (``method`` itself excluded)."""
    settings = method_settings(method, "search.optuna.space.method")
    return [a for a in spec.search.optuna.space.axes() if a != METHOD and takes(AXES[a], settings)]


def suggest_point(spec: SweepSpec, trial: Any) -> dict[str, Any]:
    """Optuna define-by-run: the method first, then only the axes that method has (conditional space). The
    Optuna parameters are named as the spec spells the axes, so a study reads like its spec."""
    space = spec.search.optuna.space
    methods = _methods(spec)
    point: dict[str, Any] = {}
    method = trial.suggest_categorical(space.spelled(METHOD), methods) if space.method else methods[0]
    if space.method:
        point[space.spelled(METHOD)] = method
    for axis in applicable_axes(spec, method):
        name, domain = space.spelled(axis), getattr(space, axis)
        if isinstance(domain, FloatRange):
            point[name] = trial.suggest_float(name, domain.low, domain.high, log=domain.log)
        else:
            point[name] = trial.suggest_categorical(name, list(domain))
    return point


def optuna_point(spec: SweepSpec, suggested: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A suggestion (keyed as the spec spells the axes) → (point by axis name, spec field of each value)."""
    space = spec.search.optuna.space
    by_spelling = {space.spelled(a): a for a in AXES}
    point = {by_spelling[key]: value for key, value in suggested.items()}
    return point, {a: f"search.optuna.space.{space.spelled(a)}" for a in point}


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
                point[METHOD] = method
            where = {a: f"search.optuna.space.{space.spelled(a)}" for a in point}
            corners.append(resolve_trial(spec, point, spec.seeds[0], where, train_dir))
            if len(corners) > MAX_OPTUNA_COMBINATIONS:
                raise ConfigError(
                    "search.optuna.space", f"more than {MAX_OPTUNA_COMBINATIONS} categorical combinations to check"
                )
    unused = [a for a in space.axes() if a != METHOD and a not in used]
    if unused:
        raise ConfigError(
            f"search.optuna.space.{space.spelled(unused[0])}",
            f"is not a setting of any method in the space ({', '.join(methods)})",
        )
    return SweepPlan(spec, corners[0], [], spec.search.optuna.num_samples, corners)


def plan(spec: SweepSpec, train_dir: str) -> SweepPlan:
    """Expand and validate every trial of the sweep (grid) or every corner of its space (Optuna)."""
    return plan_grid(spec, train_dir) if spec.search.kind == "grid" else plan_optuna(spec, train_dir)


def label_params(spec: SweepSpec) -> list[str]:
    """The MLflow params of the axes this sweep varies: what a trial's label shows besides its method."""
    search = spec.search.grid if spec.search.kind == "grid" else spec.search.optuna.space
    names = set(search.axes())
    for variant in getattr(search, "variants", None) or []:
        names |= set(variant.axes())
    return [schema.param(*AXES[a].path) for a in AXES if a in names and a != METHOD]
