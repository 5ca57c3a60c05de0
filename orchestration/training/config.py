"""The training config: one pydantic model, validated once at the edge (CLI or API), then passed as a dict.

Every error becomes a :class:`comol.errors.ConfigError` naming the dotted field (``training.lr``) and,
where finite, the allowed values, so the CLI can print one clear line before anything starts.
Paths are made absolute here because Ray workers run in another working directory.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from comol.errors import ConfigError
from orchestration.config_errors import config_error, read_yaml
from orchestration.data.arithmetic import max_held_out
from orchestration.data.prompts import DEFAULT_TEMPLATE, PromptTemplate

SMOLLM2 = "smollm2-135m"
ARITHMETIC = "arithmetic"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HOOK = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# comol's own ConfigError fields → the adapter key a user writes in YAML
_ADAPTER_FIELD = {"rank": "r", "experts": "num_experts"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


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
    lr: float = Field(1e-4, gt=0)
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


class FaultConfig(_Section):
    """TEST ONLY: rank ``rank`` exits (as if killed) at the start of step ``at_step``, once per run."""

    rank: int = Field(ge=0)
    at_step: int = Field(gt=0)


class EvaluationHookConfig(_Section):
    """Post-training evaluation: ``hook`` is 'module:function', called on every rank (see hooks.py)."""

    hook: str
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("hook")
    @classmethod
    def _hook(cls, value: str) -> str:
        if not _HOOK.match(value):
            raise ValueError(f"{value!r} is not 'package.module:function'")
        return value


class TrainConfig(_Section):
    """One fine-tuning run. ``TrainConfig.from_dict`` / ``load_config`` are the validating entry points."""

    name: str = Field("comol", pattern=r"^[A-Za-z0-9][\w.-]*$", description="run-name prefix")
    run_name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][\w.-]*$", description="exact Ray run name: reusing one RESUMES that run"
    )
    model: str = Field(SMOLLM2, description=f"'{SMOLLM2}', a local model folder, or a hub id 'org/name'")
    method: str = "comol"
    adapter: dict[str, Any] = Field(default_factory=dict, description="fields of the method's adapter config")
    data: DataConfig = Field(default_factory=DataConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    output_dir: str = Field("outputs", description="Ray storage path: runs, checkpoints and adapters go here")
    fault: FaultConfig | None = None
    evaluation: EvaluationHookConfig | None = None

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

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, value: str) -> str:
        if "://" in value:  # remote storage (s3://, gs://) is Ray's business
            return value
        return str(Path(value).expanduser().resolve())

    @model_validator(mode="after")
    def _held_out_arithmetic(self) -> TrainConfig:
        """Arithmetic evaluation (``evaluation.options.arithmetic``) holds out this run's own training problems
        unless told which training set to hold out: the same problems cannot be both trained and scored."""
        held_out = self.evaluation.options.get("arithmetic") if self.evaluation else None
        if isinstance(held_out, dict) and self.data.source == ARITHMETIC:
            seed = self.data.seed if self.data.seed is not None else self.training.seed
            # a new mapping: the caller's dict (a sweep's resolved trial, say) is left as it was
            self.evaluation.options["arithmetic"] = {"train_size": self.data.size, "data_seed": seed, **held_out}
        return self

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
        """The method's adapter config, built by the library, so methods registered later just work."""
        from comol.methods import make_config

        return make_config(self.method, **{"base_model_name_or_path": self.model, **self.adapter})

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
        try:
            self.adapter_config()
        except ConfigError as err:
            field = _ADAPTER_FIELD.get(err.field, err.field)
            raise ConfigError(f"adapter.{field}", _bare_message(err), allowed=err.allowed) from None
        except TypeError as err:
            raise ConfigError("adapter", str(err)) from None
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
        held_out = self.evaluation.options.get("arithmetic") if self.evaluation else None
        if isinstance(held_out, dict) and isinstance(held_out.get("size"), int) and held_out["size"] > max_held_out():
            raise ConfigError(
                "evaluation.options.arithmetic.size",
                f"{held_out['size']} is more held-out problems than there are: at most {max_held_out()}",
            )
        if self.evaluation is not None and "prompt_template" in self.evaluation.options:
            raise ConfigError(
                "evaluation.options.prompt_template",
                "evaluation always uses the template the adapter was trained with: set data.prompt_template",
            )
        if self.data.source == ARITHMETIC and self.data.size is None:
            raise ConfigError("data.size", f"how many problems the '{ARITHMETIC}' generator makes (e.g. 1000)")
        if self.fault is not None:
            if self.fault.rank >= workers:
                raise ConfigError("fault.rank", f"{self.fault.rank} is not a rank of {workers} worker(s)")
            if "://" in self.output_dir:
                raise ConfigError("fault", "the test-only fault switch needs a local output_dir (its marker file)")
            max_steps = self.training.max_steps
            if max_steps is not None and self.fault.at_step > max_steps:
                raise ConfigError("fault.at_step", f"{self.fault.at_step} is beyond training.max_steps = {max_steps}")


def _bare_message(err: ConfigError) -> str:
    """A ConfigError's message without its field prefix and 'allowed' suffix (to re-raise it renamed)."""
    text = str(err).removeprefix(f"{err.field}: ")
    if err.allowed is not None:
        text = text.removesuffix(f" (allowed: {', '.join(map(str, err.allowed))})")
    return text


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
        node[leaf] = yaml.safe_load(raw) if raw.strip() else raw
    return data


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a YAML training config, apply ``--set`` style overrides, and validate it."""
    data = read_yaml(path, "training config", "config")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError("config", f"{path} must hold a mapping of settings, got {type(data).__name__}")
    return TrainConfig.from_dict(apply_overrides(data, overrides))
