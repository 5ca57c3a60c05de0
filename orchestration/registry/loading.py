"""Load a registered adapter as a ready model: ``models:/NAME@champion`` → (model, tokenizer).

The artifact is the adapter in PEFT layout; its ``adapter_config.json`` names the base model, which the
project's model loader resolves (a local folder, a hub id, or ``smollm2-135m``), and ``comol.load_adapter``
injects the adapter and loads its weights exactly. The prompt template the adapter was trained with (recorded in
its folder) comes back with it, so a caller prompts it as training did.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import PurePath
from typing import Any, NamedTuple

import torch

from comol import load_adapter, read_adapter_config
from comol.errors import ConfigError
from orchestration.data.prompts import recorded_template
from orchestration.tracking.store import open_store

# name or path → (model, tokenizer)
Loader = Callable[[str], tuple[torch.nn.Module, Any]]


def default_loader(spec: str) -> tuple[torch.nn.Module, Any]:
    """The project's loader (``orchestration.models``) in float32 on the CPU, and the model's tokenizer."""
    from orchestration.models import load_model, load_tokenizer

    return load_model(spec, dtype=torch.float32), load_tokenizer(spec)


def _parse_models_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` → (name, alias, version)."""
    rest = model_uri.removeprefix("models:/").strip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        if name and alias and "/" not in alias:
            return name, alias, None
    elif "/" in rest:
        name, version = rest.rsplit("/", 1)
        if name and version.isdigit():
            return name, None, version
    raise ConfigError("model", f"{model_uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION")


def download_adapter(model_uri: str, directory: str, tracking_uri: str | None = None) -> str:
    """Fetch a ``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or ``runs:/ID/PATH`` adapter into ``directory``.

    The registry is resolved with our own client: MLflow 3.17's ``models:/`` artifact repository looks
    versions up in the *default* registry whatever registry URI it is given (and may create a local
    ``mlflow.db`` doing so).
    """
    from mlflow.exceptions import MlflowException

    client = open_store(tracking_uri)
    try:
        if model_uri.startswith("models:/"):
            name, alias, number = _parse_models_uri(model_uri)
            if alias:
                version = client.get_model_version_by_alias(name, alias)
            else:
                version = client.get_model_version(name, number)
            run_root = client.get_run(version.run_id).info.artifact_uri.rstrip("/") if version.run_id else None
            if run_root and version.source.startswith(run_root + "/"):
                return client.download_artifacts(version.run_id, version.source[len(run_root) + 1 :], directory)
            import mlflow.artifacts

            return mlflow.artifacts.download_artifacts(
                artifact_uri=version.source, dst_path=directory, tracking_uri=client.tracking_uri
            )
        if model_uri.startswith("runs:/"):
            run_id, _, path = model_uri.removeprefix("runs:/").partition("/")
            return client.download_artifacts(run_id, path, directory)
    except MlflowException as err:
        raise ConfigError("model", f"cannot fetch {model_uri!r} from {client.tracking_uri}: {err.message}") from None
    raise ConfigError("model", f"{model_uri!r} is not a models:/ or runs:/ URI")


class LoadedAdapter(NamedTuple):
    model: torch.nn.Module  # the base with the adapter loaded, in eval mode
    tokenizer: Any
    prompt_template: str  # the template it was trained with (orchestration/data/prompts.py)


def load_registered_adapter(
    model_uri: str,
    tracking_uri: str | None = None,
    loader: Loader | None = None,
) -> LoadedAdapter:
    """A base model with the registered adapter loaded, its tokenizer, and the prompt template it was trained with."""
    with tempfile.TemporaryDirectory(prefix="comol-adapter-") as tmp:
        local = download_adapter(model_uri, tmp, tracking_uri)
        config = read_adapter_config(local)
        base = config.base_model_name_or_path
        if not base:
            raise ConfigError("base_model_name_or_path", f"the adapter at {model_uri!r} does not name its base model")
        if ".." in PurePath(base).parts:  # a stored record must not steer the loader to a path relative to here
            raise ConfigError(
                "base_model_name_or_path",
                f"{base!r} (in the adapter at {model_uri!r}) climbs out of its folder with '..': a base model is "
                "named by a hub id, a shipped name (smollm2-135m) or an absolute path",
            )
        model, tokenizer = (loader or default_loader)(base)
        model, _ = load_adapter(model, local)
        template = recorded_template(local)
    return LoadedAdapter(model.eval(), tokenizer, template)
