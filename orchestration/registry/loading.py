"""Load a registered adapter as a ready model: ``models:/NAME@champion`` → (model, tokenizer, prompt template).

A version is the adapter's MLflow Model (``orchestration.serving``), or, if registered before adapters were
MLflow Models, the adapter folder in PEFT layout. Either way the adapter's ``adapter_config.json`` names the
base model, which the project's model loader resolves (a local folder, a hub id, or ``smollm2-135m``) unless
the model bundles a copy, and ``comol.load_adapter`` injects the adapter and loads its weights exactly. The
prompt template the adapter was trained with (recorded in its folder) comes back with it, so a caller prompts it
as training did.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path, PurePath
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


LOGGED_MODEL_PREFIX = "m-"  # MLflow 3's logged model ids: models:/m-… names one logged model


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
    raise ConfigError(
        "model", f"{model_uri!r} is not models:/NAME@ALIAS, models:/NAME/VERSION or models:/<logged model id>"
    )


def run_model_id(client, run_id: str) -> str | None:
    """The logged model a trial run output (the latest, should it have several), or None for a run recorded before
    adapters were MLflow Models."""
    outputs = client.get_run(run_id).outputs
    models = list(outputs.model_outputs) if outputs and outputs.model_outputs else []
    return max(models, key=lambda m: m.step).model_id if models else None


def _logged_model_id(source: str) -> str | None:
    """The logged model a ``models:/m-…`` source names, else None."""
    rest = source.removeprefix("models:/").strip("/") if source.startswith("models:/") else ""
    return rest if rest.startswith(LOGGED_MODEL_PREFIX) and "/" not in rest and "@" not in rest else None


def _download_logged_model(client, model_id: str, directory: str) -> str:
    import mlflow.artifacts

    location = client.get_logged_model(model_id).artifact_location
    return mlflow.artifacts.download_artifacts(
        artifact_uri=location, dst_path=directory, tracking_uri=client.tracking_uri
    )


def download_adapter(model_uri: str, directory: str, tracking_uri: str | None = None) -> str:
    """Fetch what a ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/<logged model id>`` or
    ``runs:/ID/adapter`` names into ``directory``: an adapter's MLflow Model folder, or (versions and runs recorded
    before adapters were MLflow Models) a plain adapter folder. ``serving.package.locate`` tells them apart.

    The registry is resolved with our own client: MLflow 3.17's ``models:/`` artifact repository looks
    versions up in the *default* registry whatever registry URI it is given (and may create a local
    ``mlflow.db`` doing so).
    """
    from mlflow.exceptions import MlflowException

    from comol.persistence import CONFIG_NAME
    from orchestration.tracking import schema

    client = open_store(tracking_uri)
    try:
        if _logged_model_id(model_uri):
            return _download_logged_model(client, _logged_model_id(model_uri), directory)
        if model_uri.startswith("models:/"):
            name, alias, number = _parse_models_uri(model_uri)
            if alias:
                version = client.get_model_version_by_alias(name, alias)
            else:
                version = client.get_model_version(name, number)
            # The SQL registry keeps the link in ``source`` (models:/<model id>), not in ``model_id``.
            model_id = version.model_id or _logged_model_id(version.source)
            if model_id:
                return _download_logged_model(client, model_id, directory)
            run_root = client.get_run(version.run_id).info.artifact_uri.rstrip("/") if version.run_id else None
            if run_root and version.source.startswith(run_root + "/"):
                return client.download_artifacts(version.run_id, version.source[len(run_root) + 1 :], directory)
            import mlflow.artifacts

            return mlflow.artifacts.download_artifacts(
                artifact_uri=version.source, dst_path=directory, tracking_uri=client.tracking_uri
            )
        if model_uri.startswith("runs:/"):
            run_id, _, path = model_uri.removeprefix("runs:/").partition("/")
            path = path.strip("/") or schema.ADAPTER_ARTIFACT
            names = {f.path.rsplit("/", 1)[-1] for f in client.list_artifacts(run_id, path)}
            model_id = run_model_id(client, run_id) if path == schema.ADAPTER_ARTIFACT else None
            if CONFIG_NAME not in names and model_id:
                return _download_logged_model(client, model_id, directory)
            return client.download_artifacts(run_id, path, directory)
    except MlflowException as err:
        raise ConfigError("model", f"cannot fetch {model_uri!r} from {client.tracking_uri}: {err.message}") from None
    raise ConfigError("model", f"{model_uri!r} is not a models:/ or runs:/ URI")


class LoadedAdapter(NamedTuple):
    model: torch.nn.Module  # the base with the adapter loaded, in eval mode
    tokenizer: Any
    prompt_template: str  # the template it was trained with (orchestration/data/prompts.py)


def load_adapter_folder(
    adapter_dir: str | Path, base: str | Path | None = None, loader: Loader | None = None
) -> LoadedAdapter:
    """A base model with the adapter at ``adapter_dir`` loaded, its tokenizer and its prompt template. The base
    is ``base`` (a copy bundled in an MLflow Model) or the one the adapter's config names."""
    base = base or read_adapter_config(adapter_dir).base_model_name_or_path
    if not base:
        raise ConfigError("base_model_name_or_path", f"the adapter at {adapter_dir} does not name its base model")
    if ".." in PurePath(base).parts:  # a stored record must not steer the loader to a path relative to here
        raise ConfigError(
            "base_model_name_or_path",
            f"{base!r} (in the adapter at {adapter_dir}) climbs out of its folder with '..': a base model is "
            "named by a hub id, a shipped name (smollm2-135m) or an absolute path",
        )
    model, tokenizer = (loader or default_loader)(str(base))
    model, _ = load_adapter(model, adapter_dir)
    return LoadedAdapter(model.eval(), tokenizer, recorded_template(adapter_dir))


def load_registered_adapter(
    model_uri: str,
    tracking_uri: str | None = None,
    loader: Loader | None = None,
) -> LoadedAdapter:
    """A base model with the registered adapter loaded, its tokenizer and the prompt template it was trained with:
    from a version that is an MLflow Model (the adapter and, if bundled, the base inside it) or a plain adapter
    folder."""
    from orchestration.serving.package import locate

    with tempfile.TemporaryDirectory(prefix="comol-adapter-") as tmp:
        adapter_dir, bundled = locate(download_adapter(model_uri, tmp, tracking_uri))
        return load_adapter_folder(adapter_dir, bundled, loader)
