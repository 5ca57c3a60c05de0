"""The sweep spec: one YAML file describes an ablation (grid) or a search (Optuna), validated before Ray starts.

The schema is strict (unknown keys are errors) so a typo never silently runs a different sweep. The axes are
derived from the configs (:mod:`orchestration.sweep.axes`), under their field names, aliases accepted. Every
pydantic error is turned into a :class:`comol.errors.ConfigError` naming the field as the user wrote it
(``search.grid.rank``) and, where the set is finite, the allowed values.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from comol.errors import ConfigError
from orchestration.config_errors import config_error, read_yaml
from orchestration.sweep.axes import AXES, MULTIPLIER, axis_named
from orchestration.tracking.store import TRACKING_SCHEMES

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
METRIC_PATTERN = r"^[A-Za-z0-9_.@/-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloatRange(_Strict):
    """A continuous range for Optuna (``log: true`` samples on a log scale, as for learning rates)."""

    low: float = Field(gt=0)
    high: float = Field(gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


def _unique_nonempty(values: list[Any] | None) -> list[Any] | None:
    if values is None:
        return None
    if not values:
        raise ValueError("must list at least one value")
    if len({repr(v) for v in values}) != len(values):
        raise ValueError(f"has repeated values: {values}")
    return values


class _AxisValues(_Strict):
    """Values of axes (a variant, the grid, the Optuna space): one field per axis of
    :data:`orchestration.sweep.axes.AXES`. Remembers how the user spelled each axis (its name or an alias), so
    later errors name the key as written. Each axis's own values are checked by its config when trials are
    planned; here only what no config knows (lists without repeats, alpha_multiplier > 0)."""

    _spelled: dict[str, str] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _spelling(cls, data: Any, handler: Any) -> Any:
        named: dict[str, str] = {}
        for key in data if isinstance(data, dict) else ():
            axis = axis_named(str(key))
            if axis is not None and axis.name in named:
                raise ValueError(f"{named[axis.name]} and {key} are one axis ({axis.name}): give it once")
            if axis is not None:
                named[axis.name] = str(key)
        model = handler(data)
        if named:
            model._spelled = named
        return model

    @field_validator(*AXES, check_fields=False)
    @classmethod
    def _unique(cls, values: Any) -> Any:
        return _unique_nonempty(values) if isinstance(values, list) else values

    @field_validator(MULTIPLIER, check_fields=False)
    @classmethod
    def _positive(cls, values: Any) -> Any:
        listed = values if isinstance(values, list) else [values] if isinstance(values, float) else []
        if any(not (v > 0 and math.isfinite(v)) for v in listed):
            raise ValueError(f"must be positive finite numbers, got {values}")
        return values

    def axes(self) -> dict[str, Any]:
        """The axes set here, by axis name, in the order of :data:`AXES`."""
        return {a: getattr(self, a) for a in AXES if getattr(self, a, None) is not None}

    def spelled(self, axis: str) -> str:
        """The key the user wrote for ``axis`` (its name or an alias)."""
        return self._spelled.get(axis, axis)

    def _check_alpha_pair(self, where: str) -> None:
        axes = self.axes()
        if "alpha" in axes and MULTIPLIER in axes:
            raise ValueError(f"set alpha or {MULTIPLIER} in {where}, not both ({MULTIPLIER}: alpha = m × r)")


def _axis_fields(shape: Literal["one", "list", "space"]) -> dict[str, Any]:
    """One optional field per axis holding a value (``one``), a list of values (``list``), or, for a float
    axis, a list or a range (``space``)."""
    fields = {}
    for axis in AXES.values():
        kind: Any = StrictBool if axis.kind is bool else axis.kind
        if shape == "list" or (shape == "space" and axis.kind is not float):
            kind = list[kind]
        elif shape == "space":
            kind = list[kind] | FloatRange
        alias = AliasChoices(*axis.spellings) if axis.aliases else None
        fields[axis.name] = (kind | None, Field(default=None, validation_alias=alias))
    return fields


class _VariantAxes(_AxisValues):
    adapter: dict[str, Any] | None = Field(
        default=None, description="more adapter settings for this variant only (e.g. MoLA's expert_schedule)"
    )

    @model_validator(mode="after")
    def _alpha(self) -> _VariantAxes:
        self._check_alpha_pair("variant")
        return self

    def assigned(self) -> dict[str, Any]:
        """The variant's point: its axes (by axis name) and its ``adapter`` mapping, if any."""
        return {**self.axes(), **({"adapter": self.adapter} if self.adapter is not None else {})}


Variant = create_model(
    "Variant",
    __base__=_VariantAxes,
    __module__=__name__,
    __doc__="One hand-written assignment of axes; the grid is the product of its variants and its axis lists.",
    **_axis_fields("one"),
)


class _GridAxes(_AxisValues):
    variants: list[Variant] | None = None  # type: ignore[valid-type]

    @field_validator("variants")
    @classmethod
    def _unique_variants(cls, values: list[Any] | None) -> list[Any] | None:
        return _unique_nonempty(values)

    @model_validator(mode="after")
    def _consistent(self) -> _GridAxes:
        axes = self.axes()
        self._check_alpha_pair("the grid")
        for i, variant in enumerate(self.variants or []):
            both = [a for a in variant.axes() if a in axes]
            if both:
                spelled = ", ".join(variant.spelled(a) for a in both)
                raise ValueError(f"variants[{i}] sets {spelled}, also a grid axis: set it in one place")
            if ("alpha" in axes and variant.alpha_multiplier is not None) or (
                MULTIPLIER in axes and variant.alpha is not None
            ):
                raise ValueError(f"variants[{i}]: alpha and {MULTIPLIER} would both be set")
        if not axes and not self.variants:
            raise ValueError(f"lists no axis: give variants or at least one of {', '.join(AXES)}")
        return self


GridSearch = create_model(
    "GridSearch",
    __base__=_GridAxes,
    __module__=__name__,
    __doc__="The full product: variants × every listed axis. Under grid, the seed is one more axis.",
    **_axis_fields("list"),
)


class _SpaceAxes(_AxisValues):
    @model_validator(mode="after")
    def _some(self) -> _SpaceAxes:
        self._check_alpha_pair("the space")
        if not self.axes():
            raise ValueError(f"lists no axis: give at least one of {', '.join(AXES)}")
        return self


OptunaSpace = create_model(
    "OptunaSpace",
    __base__=_SpaceAxes,
    __module__=__name__,
    __doc__="Categorical lists or float ranges. An axis is sampled only for methods that have that setting.",
    **_axis_fields("space"),
)


class Asha(_Strict):
    """Early stopping of a trial on an explicit per-step metric (ASHA), e.g. ``train/loss`` by ``step``."""

    metric: str = Field(pattern=METRIC_PATTERN)
    mode: Literal["min", "max"]
    time_attr: str = Field(default="step", pattern=METRIC_PATTERN)
    max_t: int = Field(gt=0)
    grace_period: int = Field(default=1, gt=0)
    reduction_factor: float = Field(default=2.0, gt=1)

    @model_validator(mode="after")
    def _grace(self) -> Asha:
        if self.grace_period > self.max_t:
            raise ValueError(f"grace_period ({self.grace_period}) exceeds max_t ({self.max_t})")
        return self


class OptunaSearch(_Strict):
    """TPE over the space; each suggested configuration runs every seed and Optuna learns the seed mean."""

    num_samples: int = Field(gt=0, description="configurations to try (each runs all seeds)")
    sampler_seed: int = 0
    space: OptunaSpace  # type: ignore[valid-type]
    asha: Asha | None = None


class Search(_Strict):
    grid: GridSearch | None = None  # type: ignore[valid-type]
    optuna: OptunaSearch | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Search:
        if (self.grid is None) == (self.optuna is None):
            raise ValueError("give exactly one of grid or optuna")
        return self

    @property
    def kind(self) -> str:
        return "grid" if self.grid is not None else "optuna"


class Resources(_Strict):
    """How many trials run at once and what each trial's driver holds (its train workers hold the rest)."""

    max_concurrent_trials: int | None = Field(
        default=None, gt=0, description="default: as many as the cluster's CPUs/GPUs fit"
    )
    trial_memory_mb: int = Field(default=64, gt=0, description="memory the trial driver reserves (it holds no CPU)")
    max_failures: int = Field(default=0, ge=0, description="retries of a failed trial; a retry reopens its run")


class Tracking(_Strict):
    uri: str | None = Field(default=None, description="default: sqlite:///<cwd>/mlflow.db")
    artifact_location: str | None = Field(default=None, description="default: <cwd>/mlartifacts for local stores")

    @field_validator("uri")
    @classmethod
    def _scheme(cls, uri: str | None) -> str | None:
        if uri is not None and not uri.startswith(TRACKING_SCHEMES):
            raise ValueError(f"{uri!r} is not a tracking URI (allowed schemes: {', '.join(TRACKING_SCHEMES)})")
        return uri


class SweepSpec(_Strict):
    name: str = Field(description="the sweep's identity in MLflow and on disk")
    description: str = ""
    train: dict[str, Any] = Field(description="the base training config (orchestration.training TrainConfig)")
    search: Search
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    metric: str = Field(default="eval/average", pattern=METRIC_PATTERN)
    mode: Literal["max", "min"] = "max"
    resources: Resources = Field(default_factory=Resources)
    tracking: Tracking = Field(default_factory=Tracking)
    entry: Literal["train", "smoke"] = Field(
        default="train", description="train: TorchTrainer + evaluation; smoke: seconds-long in-process check"
    )
    output_dir: str | None = Field(default=None, description="default: <cwd>/outputs/sweeps/<name>")
    base_row: bool = Field(
        default=True,
        description="evaluate the untrained base model once (train entry with an evaluation hook) and show it as "
        "the reference row of the summary and the report; it is reused from any earlier sweep in the same MLflow "
        "store with the same model, evaluation, prompt template, precision and workers",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not is_valid_name(name):
            raise ValueError(f"{name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return name

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, seeds: list[int]) -> list[int]:
        if not seeds:
            raise ValueError("must list at least one seed")
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"has repeated seeds: {seeds}")
        if any(s < 0 for s in seeds):
            raise ValueError(f"seeds must be >= 0, got {seeds}")
        return seeds


def parse_spec(data: Any) -> SweepSpec:
    if not isinstance(data, dict):
        raise ConfigError("spec", f"must be a YAML mapping with keys name, train, search, …; got {type(data).__name__}")
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as err:
        raise config_error(err, SweepSpec, "spec") from None


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep YAML (schema only; :func:`orchestration.sweep.space.plan` checks each trial)."""
    return parse_spec(read_yaml(path, "sweep spec", "spec"))


def is_valid_name(name: str) -> bool:
    return re.match(NAME_PATTERN, name) is not None
