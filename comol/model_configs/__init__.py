"""Shipped Hugging Face ``config.json`` files of the paper's base models, by short name."""

from __future__ import annotations

from pathlib import Path

from comol.errors import ConfigError
from comol.user_files import read_json

CONFIG_DIR = Path(__file__).parent
SHIPPED = {p.stem: p for p in sorted(CONFIG_DIR.glob("*.json"))}
# Hub models with the same shapes as a shipped config: instruction tuning changes weights, not shapes.
SAME_SHAPES = {"llama-3.1-8b-instruct": "llama-3.1-8b"}


def shipped_config(model_id: str) -> Path | None:
    """The shipped config.json that describes a hub id (``Qwen/Qwen3-8B``) or short name, if any."""
    name = model_id.rsplit("/", 1)[-1].lower()
    return SHIPPED.get(SAME_SHAPES.get(name, name))


def resolve_model_config(name_or_path: str) -> Path:
    """A shipped short name (e.g. ``qwen3-8b``) or a path to a config.json (or its folder)."""
    if name_or_path in SHIPPED or name_or_path in SAME_SHAPES:
        return SHIPPED[SAME_SHAPES.get(name_or_path, name_or_path)]
    path = Path(name_or_path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ConfigError(
            "model-config",
            f"no such file {str(path)!r}; pass a config.json path or a shipped name",
            allowed=[*SHIPPED, *SAME_SHAPES],
        )
    return path


def load_model_config_dict(name_or_path: str) -> dict:
    path = resolve_model_config(name_or_path)
    data = read_json(path, "model-config file")
    if not isinstance(data, dict) or "model_type" not in data:
        raise ConfigError("model-config", f"{path} is not a Hugging Face config.json (no 'model_type')")
    return data
