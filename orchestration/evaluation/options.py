"""The options of the shipped evaluation hook (``BENCHMARK_HOOK``), typed: a training config that names the hook
has them validated with the rest of the config, so a misspelled or out-of-range option fails before training.

No torch here: the training config imports this while it validates, before Ray or a model is touched.

Options by task (every one optional):
- math: ``math`` (datasets, default all six; ``[]`` to skip), ``limit`` (examples per dataset), ``data_dir``;
- arithmetic: ``arithmetic`` (``{size, train_size, data_seed}``: held-out generated problems);
- humaneval: ``humaneval`` (on/off), ``humaneval_limit`` (problems), ``num_samples``, ``postprocess``;
- all tasks: ``max_new_tokens``, ``batch_size``, ``generations_path`` (rank 0 writes every record there);
  ``prompt_template`` is not the user's to set: the hook runner sets it to the template the adapter was trained
  with (recorded in its folder), so every task prompts as training did.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

from orchestration.data.arithmetic import max_held_out
from orchestration.data.prompts import PromptTemplate
from orchestration.evaluation.math_datasets import MATH_DATASETS

BENCHMARK_HOOK = "orchestration.evaluation.benchmarks:training_hook"
MathDatasetName = Literal[MATH_DATASETS]  # type: ignore[valid-type]


class _GivenOptions(BaseModel):
    """Frozen and strict; dumped as given (defaults are the hook's, not part of a run's recorded identity)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_serializer(mode="wrap")
    def _as_given(self, handler: Any) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if key in self.model_fields_set}


class ArithmeticOptions(_GivenOptions):
    """``size`` generated problems that the training set ``(data.size=train_size, data.seed=data_seed)`` lacks."""

    size: int = Field(100, gt=0)
    train_size: int | None = Field(None, gt=0, description="the training set to hold out; default: the run's own")
    data_seed: int | None = Field(None, description="its generator seed; default: the run's own data seed")

    @field_validator("size")
    @classmethod
    def _size(cls, value: int) -> int:
        if value > max_held_out():
            raise ValueError(f"{value} is more held-out problems than there are: at most {max_held_out()}")
        return value


class BenchmarkOptions(_GivenOptions):
    math: list[MathDatasetName] = Field(default_factory=lambda: list(MATH_DATASETS))
    limit: int | None = Field(None, gt=0, description="math: examples per dataset (the first N)")
    data_dir: str | None = Field(None, description="math: the test sets' folder; default ../shared/data/math")
    arithmetic: ArithmeticOptions | None = None
    humaneval: bool = False
    humaneval_limit: int | None = Field(None, gt=0, description="humaneval: problems (the first N)")
    num_samples: int | None = Field(None, gt=0, description="humaneval: completions per problem (default 10)")
    postprocess: Literal["none", "standard"] | None = Field(
        None,
        description="humaneval: 'none' (default) scores completions as generated, as the authors do; 'standard': "
        "first fenced block, repeated signature dropped, cut at the Codex stop sequences",
    )
    max_new_tokens: int | None = Field(None, gt=0)
    batch_size: int | None = Field(None, gt=0)
    generations_path: str | None = None
    prompt_template: PromptTemplate | None = Field(
        None, description="set by the hook runner: the template the adapter was trained with (default alpaca)"
    )

    @field_validator("math", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return [v.lower() if isinstance(v, str) else v for v in value] if isinstance(value, list) else value

    def generation_overrides(self) -> dict[str, int]:
        """The decoding settings given here, over each task's protocol defaults."""
        return {k: v for k, v in (("max_new_tokens", self.max_new_tokens), ("batch_size", self.batch_size)) if v}
