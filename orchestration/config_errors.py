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
from comol.user_files import read_text


class StrictLoader(yaml.SafeLoader):
    """YAML as a researcher means it: only ``true``/``false`` are booleans (YAML 1.2; 1.1's ``yes``/``no``/``on``/
    ``off`` stay strings, so a rank of ``yes`` is refused instead of becoming 1) and a key given twice in one
    mapping is an error instead of the last one silently winning."""

    yaml_implicit_resolvers: typing.ClassVar[dict[Any, list[Any]]] = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # ``<<: *base`` may be overridden: that is its point
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first != key_node.start_mark.line:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first given on line {first + 1})", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)

# A real config or spec has hundreds of values. Anchors and aliases let a few lines stand for billions of them
# (an "alias bomb"); counting every value as it would be expanded, up to this many, refuses one in milliseconds.
MAX_YAML_VALUES = 100_000


def _check_size(data: Any, where: str) -> None:
    """Refuse ``data`` if it expands to more than ``MAX_YAML_VALUES`` values (shared aliases counted each time)."""
    budget = MAX_YAML_VALUES
    stack = [data]
    while stack:
        budget -= 1
        if budget < 0:
            raise ConfigError(
                where,
                f"expands to more than {MAX_YAML_VALUES:,} values (anchors and aliases count each time they are "
                "used): refused as too large for a config",
            )
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def parse_yaml(text: str, source: object, field: str) -> Any:
    """``text`` read by ``StrictLoader`` and checked for size; any problem is a ``ConfigError`` on ``field``."""
    try:
        data = yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as err:
        raise ConfigError(field, f"{source} is not valid YAML: {err}") from None
    except RecursionError:
        raise ConfigError(field, f"{source} is nested too deeply to read") from None
    _check_size(data, field)
    return data


def read_yaml(path: str | Path, what: str, field: str) -> Any:
    """The parsed contents of ``path``; a missing file names ``what`` it should be, bad YAML names ``field``."""
    return parse_yaml(read_text(path, what), path, field)


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
