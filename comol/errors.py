"""Errors raised on bad user input: each names the field or file and, where finite, the allowed values.

Every one is an ``InputError``: the CLI's one error boundary answers it with a single paragraph and exit code 2,
whatever layer raised it; anything else is a fault of the program, not of the input.
"""

from __future__ import annotations

from collections.abc import Iterable


class InputError(ValueError):
    """Bad user input of any kind (a setting, a file, a store the user named)."""


class ConfigError(InputError):
    """A user-supplied value is invalid. ``field`` names the offending setting."""

    def __init__(self, field: str, message: str, allowed: Iterable[object] | None = None):
        self.field = field
        self.message = message
        self.allowed = list(allowed) if allowed is not None else None
        text = f"{field}: {message}"
        if self.allowed is not None:
            text += f" (allowed: {', '.join(map(str, self.allowed))})"
        super().__init__(text)

    def renamed(self, field: str) -> ConfigError:
        """The same error under the name the user wrote for the setting (a CLI flag, a field of a bigger file)."""
        return ConfigError(field, self.message, self.allowed)

    def in_file(self, path: object) -> ConfigError:
        """The same error, saying which file holds the setting (a saved adapter, a model's config.json)."""
        return ConfigError(self.field, f"{self.message} (in {path})", self.allowed)


class TargetNotFoundError(ConfigError):
    """``target_modules`` matched no Linear layer of the model."""

    def __init__(self, targets: object, linear_names: list[str]):
        # Show the distinct leaf names first: that is what users put in target_modules.
        leaves = sorted({name.rsplit(".", 1)[-1] for name in linear_names})
        super().__init__(
            "target_modules",
            f"{targets!r} matched no nn.Linear module of the model. "
            f"Linear leaf names in this model: {', '.join(leaves)}",
        )
        self.linear_names = linear_names


class InputFileError(InputError):
    """A file the user named (directly, or through a store or registry) cannot be read as what it must be:
    not UTF-8, not valid JSON/YAML/safetensors, too deep or too big, or weights that do not fit."""

    def __init__(self, path: object, what: str, reason: str):
        self.path = str(path)
        self.what = what
        self.reason = reason
        super().__init__(f"{what} {path}: {reason}")
