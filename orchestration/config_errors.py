"""Reading a user's YAML at the edge: syntax errors and pydantic validation errors as one ``ConfigError`` (the
dotted field, a short message, the allowed keys or values where they are finite). Shared by the training
config and the sweep spec."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from comol.errors import ConfigError


def read_yaml(path: str | Path, what: str, field: str) -> Any:
    """The parsed contents of ``path``; a missing file names ``what`` it should be, bad YAML names ``field``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} at {path}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(field, f"{path} is not valid YAML: {err}") from None


# Under a union (a list or a range), the branch whose type did not even match is the least helpful error.
_MISMATCH = ("list_type", "model_type", "model_attributes_type")


def _is_branch(part: Any) -> bool:
    """A union branch tag pydantic puts into an error location (``list[float]``, ``FloatRange``), not a field."""
    return isinstance(part, str) and (part.startswith(("list[", "dict[", "literal[", "function")) or part[:1].isupper())


def field_name(loc: tuple[Any, ...], root_name: str) -> str:
    """pydantic's location → ``search.grid.variants[1].experts`` (branch tags dropped); ``root_name`` if empty."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not _is_branch(part):
            out += ("." if out else "") + str(part)
    return out or root_name


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, Annotated and lists)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]


def _allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str] | None:
    """The keys of the model where an unknown key was found (through optional, union and list-of-model fields;
    a union's branch tag in the location picks the branch)."""
    model = root
    parts = [p for p in loc[:-1] if not isinstance(p, int)]
    for index, part in enumerate(parts):
        if _is_branch(part):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        candidates = _models_in(field.annotation)
        if not candidates:
            return None
        tag = parts[index + 1] if index + 1 < len(parts) and _is_branch(parts[index + 1]) else None
        model = next((c for c in candidates if c.__name__ == tag), candidates[0])
    return sorted(model.model_fields)


def config_error(err: ValidationError, root: type[BaseModel], root_name: str) -> ConfigError:
    """The first (most useful) error of ``root``'s validation; other invalid fields are listed after it."""
    errors = sorted(err.errors(), key=lambda e: e["type"] in _MISMATCH)
    first = errors[0]
    if first["type"] not in _MISMATCH:
        errors = [e for e in errors if e["type"] not in _MISMATCH]
    loc = tuple(first["loc"])
    field = located = field_name(loc, root_name)
    message = str(first["msg"]).removeprefix("Value error, ")
    allowed: list[str] | None = None
    raised = first.get("ctx", {}).get("error")
    if isinstance(raised, ConfigError):  # a library check inside a validator: its setting, under this field
        field, message, allowed = f"{field}.{raised.field}", raised.message, raised.allowed
    elif first["type"] == "literal_error":
        allowed = re.findall(r"'([^']*)'", str(first.get("ctx", {}).get("expected", "")))
    elif first["type"] == "extra_forbidden":
        message = "is not a known setting"
        allowed = _allowed_keys(root, loc)
    elif first["type"] == "missing":
        message = "is required"
    others = sorted({field_name(tuple(e["loc"]), root_name) for e in errors} - {field, located})
    if others:
        message += f" (also invalid: {'; '.join(others)})"
    return ConfigError(field, message, allowed=allowed)
