"""The pyfunc of an adapter: ``load_context`` loads the base model the adapter names (or the copy bundled in the
model) and the adapter with the project's loaders; ``predict`` completes prompts in the template the adapter was
trained with (recorded in the adapter folder), through the generation code of ``comol generate`` and the benchmarks.

Input: a string column ``prompt`` (a DataFrame, or ``{"prompt": [...]}``), a list of strings, or one string.
Output: one completion per prompt, as a list of strings (served: ``{"predictions": [...]}``). Generation
settings are params (``max_new_tokens``, ``do_sample``, …); greedy by default, as the paper evaluates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mlflow.pyfunc

INPUT_COLUMN = "prompt"
ADAPTER_ARTIFACT = "adapter"  # the PEFT-format adapter folder, as a pyfunc artifact
BASE_ARTIFACT = "base_model"  # the base model folder, only when it was bundled into the model

# Generation params and their defaults (``comol generate``'s): (MLflow dtype, default).
PARAMS: dict[str, tuple[str, Any]] = {
    "max_new_tokens": ("long", 128),
    "do_sample": ("boolean", False),
    "temperature": ("double", 1.0),
    "top_p": ("double", 1.0),
    "top_k": ("long", 0),  # 0: the model's own default
    "seed": ("long", -1),  # -1: a fresh draw (sampling only)
    "batch_size": ("long", 8),
}


def prompts_of(model_input: Any) -> list[str]:
    """The prompts of a predict input: a ``prompt`` column (or the only column), a list, or one string."""
    import pandas as pd

    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, pd.DataFrame):
        if INPUT_COLUMN in model_input.columns:
            values = model_input[INPUT_COLUMN]
        elif len(model_input.columns) == 1:
            values = model_input.iloc[:, 0]
        else:
            raise ValueError(f"expected a {INPUT_COLUMN!r} column, got columns {list(model_input.columns)}")
        return [str(v) for v in values.tolist()]
    if isinstance(model_input, Mapping) and INPUT_COLUMN in model_input:
        return prompts_of(list(model_input[INPUT_COLUMN]))
    values = model_input.tolist() if hasattr(model_input, "tolist") else model_input
    if isinstance(values, (list, tuple)) and all(isinstance(v, str) for v in values):
        return list(values)
    raise ValueError(f"expected prompts as a {INPUT_COLUMN!r} column or a list of strings, got {type(model_input)}")


def generation_config(params: Mapping[str, Any] | None) -> Any:
    """The evaluation's :class:`GenerationConfig` from predict params (unknown ones are refused)."""
    from orchestration.evaluation.generation import GenerationConfig

    params = dict(params or {})
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ValueError(f"unknown params {unknown}; allowed: {sorted(PARAMS)}")
    values = {name: params.get(name, default) for name, (_, default) in PARAMS.items()}
    return GenerationConfig(
        max_new_tokens=int(values["max_new_tokens"]),
        do_sample=bool(values["do_sample"]),
        temperature=float(values["temperature"]),
        top_p=float(values["top_p"]),
        top_k=int(values["top_k"]) or None,
        seed=None if int(values["seed"]) < 0 else int(values["seed"]),
        batch_size=int(values["batch_size"]),
    )


class AdapterModel(mlflow.pyfunc.PythonModel):
    """Base model + CoMoL (or baseline) adapter, completing prompts. Stateless until ``load_context``, so the
    pickled instance in the model folder is a reference to this class and nothing else."""

    def load_context(self, context: Any) -> None:
        import torch

        from orchestration.registry.loading import load_adapter_folder

        artifacts = context.artifacts
        self.model, self.tokenizer, self.template = load_adapter_folder(
            artifacts[ADAPTER_ARTIFACT], base=artifacts.get(BASE_ARTIFACT)
        )
        if torch.cuda.is_available():
            self.model.to("cuda")

    def predict(self, context: Any, model_input: Any, params: dict[str, Any] | None = None) -> list[str]:
        from mlflow.exceptions import MlflowException

        from comol.errors import ConfigError
        from orchestration.registry.generation import complete_all

        try:  # bad input is the caller's error (HTTP 400 when served), not the server's
            prompts = prompts_of(model_input)
            config = generation_config(params)
        except (ValueError, ConfigError) as err:
            raise MlflowException.invalid_parameter_value(str(err)) from None
        return complete_all(self.model, self.tokenizer, prompts, config, self.template)
