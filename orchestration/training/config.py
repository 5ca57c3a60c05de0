"""The training config: one frozen pydantic model, validated once at the edge (CLI, sweep planning), then passed
as that object (Ray pickles it to the workers; nothing re-validates it).

Every error becomes a :class:`comol.errors.ConfigError` naming the dotted field (``training.lr``) and,
where finite, the allowed values, so the CLI can print one clear line before anything starts.
Paths are made absolute here because Ray workers run in another working directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
)

from comol.errors import ConfigError
from orchestration.config_errors import config_error, parse_yaml, read_yaml
from orchestration.data.arithmetic import ARITHMETIC
from orchestration.data.prompts import DEFAULT_TEMPLATE, PromptTemplate
from orchestration.evaluation.options import BENCHMARK_HOOK, BenchmarkOptions
from orchestration.models import SMOLLM2

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HOOK = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True, frozen=True)


def _is_pathlike(text: str) -> bool:
    return text.startswith(("/", "./", "../", "~")) or Path(text).expanduser().exists()


class DataConfig(_Section):
    """Where records come from and how they become token ids and labels."""

    source: str = Field(ARITHMETIC, description="'arithmetic', a local Alpaca-style JSON file, or a hub dataset id")
    size: int | None = Field(None, gt=0, description="arithmetic: problems to generate; files: keep the first N")
    hub_split: str = "train"
    val_size: float = Field(0, ge=0, description="validation records: a count (>= 1) or a fraction in (0, 1)")
    seed: int | None = Field(
        None, description="seed of the arithmetic generator and of the validation split; default: training.seed"
    )
    prompt_template: PromptTemplate = Field(
        DEFAULT_TEMPLATE,
        description="'alpaca' (the authors' prompt) or 'short' ('Question: ...\\nAnswer:'); recorded with the adapter, "
        "so evaluation and generation use the same one",
    )
    cutoff_len: int = Field(300, gt=1, description="tokens per example after truncation (the authors use 300)")
    labels: Literal["all", "response"] = Field(
        "all", description="'all': loss on the whole sequence (the authors); 'response': prompt masked with -100"
    )

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        if value == ARITHMETIC:
            return value
        if _is_pathlike(value):
            path = Path(value).expanduser().resolve()
            if not path.exists():
                raise ValueError(f"no such file: {path}")
            return str(path)
        if _HUB_ID.match(value):
            return value
        raise ValueError(f"{value!r} is not '{ARITHMETIC}', an existing path, or a hub dataset id 'org/name'")

    @field_validator("val_size")
    @classmethod
    def _val_size(cls, value: float) -> float:
        if value >= 1 and value != int(value):
            raise ValueError("a count must be a whole number; a fraction must be below 1")
        return value


class TrainingConfig(_Section):
    """Optimisation: the authors' defaults are AdamW, lr 1e-4, constant schedule after 200 warm-up steps."""

    batch_size: int = Field(16, gt=0, description="GLOBAL examples per optimizer step (all workers together)")
    gradient_accumulation: int = Field(1, gt=0, description="micro-batches per worker per optimizer step")
    optimizer: Literal["adamw"] = "adamw"
    lr: float = Field(1e-4, gt=0, json_schema_extra={"axis": True})  # a sweep may vary it (orchestration.sweep)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant_with_warmup", "constant", "linear", "cosine"] = "constant_with_warmup"
    warmup_steps: int = Field(200, ge=0)
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the global gradient norm; null: no clipping")
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, gt=0, description="overrides epochs when set")
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="'bf16': bf16 base weights and compute, fp32 adapter weights; 'auto': bf16 on GPUs"
    )


class LoggingConfig(_Section):
    log_every: int = Field(1, gt=0, description="report metrics every K optimizer steps")
    eval_every: int | None = Field(None, gt=0, description="validation loss every K steps (and at the end)")
    checkpoint_every: int | None = Field(None, gt=0, description="adapter-only checkpoint every K steps")
    keep_checkpoints: int | None = Field(2, gt=0, description="checkpoints kept in storage; null: all")
    poll_interval_s: float = Field(
        0.5,
        gt=0,
        description="how often Ray Train's controller collects reports (and checks worker health); a report "
        "blocks until the previous one was collected, so this bounds the cost of reporting every step",
    )


class ResourcesConfig(_Section):
    num_workers: int = Field(1, gt=0)
    gpus_per_worker: float = Field(0, ge=0)
    cpus_per_worker: float = Field(1, ge=0)
    max_failures: int = Field(2, ge=-1, description="worker-group restarts from the latest checkpoint; -1: forever")
    start_timeout_s: float = Field(120, gt=0, description="fail fast when the workers cannot be placed")
    shard_size: int | None = Field(
        None,
        gt=0,
        description="workers that shard one copy of the model (FSDP2/HSDP); default all of them. 1 replicates "
        "the model on every worker: fastest for a small model on CPUs, where gathering weights costs most",
    )


class HookEvaluation(_Section):
    """Post-training evaluation by any hook: ``hook`` is 'module:function', called on every rank (see hooks.py)
    with ``options`` as given."""

    hook: str
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("hook")
    @classmethod
    def _hook(cls, value: str) -> str:
        if not _HOOK.match(value):
            raise ValueError(f"{value!r} is not 'package.module:function'")
        return value


class BenchmarkEvaluation(_Section):
    """The shipped benchmarks (math, held-out arithmetic, HumanEval), with typed options."""

    hook: Literal[BENCHMARK_HOOK]  # type: ignore[valid-type]
    options: BenchmarkOptions = Field(default_factory=BenchmarkOptions)

    def with_options(self, **changes: Any) -> BenchmarkEvaluation:
        return self.model_copy(update={"options": self.options.model_copy(update=changes)})


def _evaluation_kind(value: Any) -> str:
    hook = value.get("hook") if isinstance(value, dict) else getattr(value, "hook", None)
    return BenchmarkEvaluation.__name__ if hook == BENCHMARK_HOOK else HookEvaluation.__name__


Evaluation = Annotated[
    Annotated[BenchmarkEvaluation, Tag(BenchmarkEvaluation.__name__)]
    | Annotated[HookEvaluation, Tag(HookEvaluation.__name__)],
    Discriminator(_evaluation_kind),
]


class TrainConfig(_Section):
    """One fine-tuning run. ``TrainConfig.from_dict`` / ``load_config`` are the validating entry points.

    ``adapter`` is the method's adapter config, built and checked by the library once, here; the config dumps it
    with every setting spelled out (defaults included), so a configuration written with or without its defaults
    is one configuration."""

    name: str = Field("comol", pattern=r"^[A-Za-z0-9][\w.-]*$", description="run-name prefix")
    run_name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][\w.-]*$", description="exact Ray run name: reusing one RESUMES that run"
    )
    model: str = Field(SMOLLM2, description=f"'{SMOLLM2}', a local model folder, or a hub id 'org/name'")
    method: str = "comol"
    adapter: Any = Field(default_factory=dict, description="the settings of the method's adapter config")
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    output_dir: str = Field("outputs", description="Ray storage path: runs, checkpoints and adapters go here")
    evaluation: Evaluation | None = None

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if value == SMOLLM2:
            return value
        if _is_pathlike(value):
            path = Path(value).expanduser().resolve()
            if not (path / "config.json").is_file():
                raise ValueError(f"{path} is not a model folder (no config.json)")
            return str(path)
        if _HUB_ID.match(value):
            return value
        raise ValueError(f"{value!r} is not '{SMOLLM2}', an existing model folder, or a hub id 'org/name'")

    @field_validator("adapter")
    @classmethod
    def _adapter(cls, value: Any, info: ValidationInfo) -> Any:
        """The adapter config of the run's method (an unknown method is reported by ``_check``)."""
        from comol.methods import METHODS, AdapterConfig, make_config

        if isinstance(value, AdapterConfig):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"must be a mapping of the method's settings, got {type(value).__name__}")
        method = info.data.get("method")
        if method not in METHODS:
            return value
        return make_config(method, **{"base_model_name_or_path": info.data.get("model"), **value})

    @field_serializer("adapter")
    def _settings(self, adapter: Any) -> Any:
        data = adapter.to_dict() if hasattr(adapter, "to_dict") else adapter
        return {k: v for k, v in data.items() if k not in ("method", "base_model_name_or_path")}

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, value: str) -> str:
        if "://" in value:  # remote storage (s3://, gs://) is Ray's business
            return value
        return str(Path(value).expanduser().resolve())

    @field_validator("evaluation")
    @classmethod
    def _held_out_arithmetic(cls, evaluation: Any, info: ValidationInfo) -> Any:
        """Arithmetic evaluation (``evaluation.options.arithmetic``) holds out this run's own training problems
        unless told which training set to hold out: the same problems cannot be both trained and scored."""
        data, training = info.data.get("data"), info.data.get("training")
        if not isinstance(evaluation, BenchmarkEvaluation) or evaluation.options.arithmetic is None or data is None:
            return evaluation
        held_out = evaluation.options.arithmetic
        if data.source != ARITHMETIC or training is None:
            return evaluation
        own = {"train_size": data.size, "data_seed": data.seed if data.seed is not None else training.seed}
        filled = {key: value for key, value in own.items() if getattr(held_out, key) is None}
        return evaluation.with_options(arithmetic=held_out.model_copy(update=filled)) if filled else evaluation

    # --- derived values -------------------------------------------------------------------------
    @property
    def use_gpu(self) -> bool:
        return self.resources.gpus_per_worker > 0

    @property
    def bf16(self) -> bool:
        return self.training.precision == "bf16" or (self.training.precision == "auto" and self.use_gpu)

    @property
    def micro_batch_size(self) -> int:
        """Examples per worker per forward pass."""
        t = self.training
        return t.batch_size // (self.resources.num_workers * t.gradient_accumulation)

    def adapter_config(self):
        """The method's adapter config (validated with this config; built by the library, so every registered
        method works)."""
        return self.adapter

    def for_run(self, *, name: str, run_name: str, output_dir: str, generations_path: str | None = None) -> TrainConfig:
        """This (validated) config as one run of a sweep: its name, storage, and where the evaluation hook writes
        the generations. The values come from the sweep, already checked: nothing is validated again."""
        update: dict[str, Any] = {"name": name, "run_name": run_name, "output_dir": output_dir}
        if generations_path is not None and isinstance(self.evaluation, BenchmarkEvaluation):
            update["evaluation"] = self.evaluation.with_options(generations_path=generations_path)
        return self.model_copy(update=update)

    # --- validation -----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Validate a plain mapping; raises ConfigError naming the field (and allowed values)."""
        if not isinstance(data, dict):
            raise ConfigError("config", f"must be a mapping of settings, got {type(data).__name__}")
        try:
            config = cls.model_validate(data)
        except ValidationError as err:
            raise config_error(err, cls, "config") from None
        config._check()
        return config

    def _check(self) -> None:
        """Cross-field rules that pydantic field types cannot express."""
        from comol.methods import METHODS

        if self.method not in METHODS:
            raise ConfigError("method", f"unknown method {self.method!r}", allowed=sorted(METHODS))
        workers, accumulation = self.resources.num_workers, self.training.gradient_accumulation
        if self.training.batch_size % (workers * accumulation):
            raise ConfigError(
                "training.batch_size",
                f"{self.training.batch_size} is not divisible by resources.num_workers × "
                f"training.gradient_accumulation = {workers} × {accumulation}",
            )
        shard = self.resources.shard_size
        if shard is not None and workers % shard:
            divisors = [d for d in range(1, workers + 1) if workers % d == 0]
            raise ConfigError(
                "resources.shard_size",
                f"{shard} does not divide resources.num_workers = {workers} into equal shard groups",
                allowed=divisors,
            )
        options = self.evaluation.options if self.evaluation is not None else {}
        if "prompt_template" in (options.model_fields_set if isinstance(options, BenchmarkOptions) else options):
            raise ConfigError(
                "evaluation.options.prompt_template",
                "evaluation always uses the template the adapter was trained with: set data.prompt_template",
            )
        if self.data.source == ARITHMETIC and self.data.size is None:
            raise ConfigError("data.size", f"how many problems the '{ARITHMETIC}' generator makes (e.g. 1000)")
        held_out = self.evaluation.options.arithmetic if isinstance(self.evaluation, BenchmarkEvaluation) else None
        if held_out is not None and held_out.train_size is None:
            raise ConfigError(
                "evaluation.options.arithmetic.train_size",
                f"the training set to hold out (its data.size): this run does not train on '{ARITHMETIC}'",
            )


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Set ``dotted.key=value`` pairs (values parsed as YAML: ``10``, ``1e-3``, ``[q_proj]``, ``null``)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError("--set", f"{item!r} is not KEY=VALUE (e.g. training.max_steps=10)")
        *parents, leaf = key.strip().split(".")
        node = data
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(key, f"{part!r} is not a section, cannot set {leaf!r} in it")
            node = child
        node[leaf] = parse_yaml(raw, f"--set {key.strip()}", key.strip()) if raw.strip() else raw
    return data


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML training config, apply ``--set`` style overrides, and validate it."""
    data = read_yaml(path, "training config", "config")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping of settings, got {type(data).__name__}")
    return TrainConfig.from_dict(apply_overrides(data, overrides))
