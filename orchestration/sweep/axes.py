"""What a sweep may vary, derived from the configs themselves, never listed by hand:

- ``method``;
- every one-value setting (bool, int, float) of any method's adapter config, under its field name (``r``,
  ``num_experts``, ``core_routing``, ``alpha``, ``dropout``, ``top_k``, …); the field's aliases (``rank``,
  ``experts``) are accepted spellings of the same axis;
- ``alpha_multiplier``: alpha = m × r, the one axis that is not a config field;
- every training setting marked ``axis`` in :class:`orchestration.training.config.TrainingConfig` (``lr``).

A field added to a method's config is therefore an axis of every sweep without further code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comol.methods import all_settings
from orchestration.training.config import TrainingConfig

METHOD = "method"
MULTIPLIER = "alpha_multiplier"


@dataclass(frozen=True)
class Axis:
    name: str  # the one name: the config field's (method, alpha_multiplier aside)
    path: tuple[str, ...]  # where a value lands in the training config
    kind: type  # str, bool, int or float
    aliases: tuple[str, ...] = ()

    @property
    def setting(self) -> str | None:
        """The adapter setting this axis sets, if it sets one (methods without it cannot take the axis)."""
        return self.path[1] if self.path[0] == "adapter" else None

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def _axes() -> dict[str, Axis]:
    axes = {METHOD: Axis(METHOD, (METHOD,), str)}
    for name, per_method in all_settings().items():
        kinds = {setting.scalar for setting in per_method.values()}
        if len(kinds) == 1 and None not in kinds:
            aliases = tuple(dict.fromkeys(a for setting in per_method.values() for a in setting.aliases))
            axes[name] = Axis(name, ("adapter", name), kinds.pop(), aliases)
    axes[MULTIPLIER] = Axis(MULTIPLIER, ("adapter", "alpha"), float)
    for name, field in TrainingConfig.model_fields.items():
        if (field.json_schema_extra or {}).get("axis"):  # type: ignore[union-attr]
            axes[name] = Axis(name, ("training", name), float if field.annotation is float else int)
    return axes


AXES: dict[str, Axis] = _axes()
BY_SPELLING: dict[str, Axis] = {spelling: axis for axis in AXES.values() for spelling in axis.spellings}


def axis_named(key: str) -> Axis | None:
    """The axis a spec key names (its name or an alias), if any."""
    return BY_SPELLING.get(key)


def values_of(point: dict[str, Any]) -> dict[str, Any]:
    """A point keyed by any spelling → keyed by axis name."""
    return {BY_SPELLING[key].name if key in BY_SPELLING else key: value for key, value in point.items()}
