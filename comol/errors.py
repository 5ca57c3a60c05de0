"""Errors raised on bad user input: each names the field and, where finite, the allowed values."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(ValueError):
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
