"""What every adapter method shares: the config fields and the layer contract.

A method is a config dataclass plus a layer class that wraps one frozen ``nn.Linear``.
Layers follow PEFT's ``BaseTunerLayer`` conventions (adapter weights live in ``ModuleDict``/
``ParameterDict`` keyed by adapter name, so saved keys drop the name exactly as PEFT's do).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from comol.errors import ConfigError

DEFAULT_ADAPTER = "default"
DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "down_proj")
# Keys a saved adapter config carries besides the settings: what it is, not how it computes.
RECORD_KEYS = ("method", "peft_type", "task_type")
# Settings every saved config has had since the first format: without them its weights cannot be read right.
REQUIRED_KEYS = ("r", "alpha", "target_modules")


@dataclass(frozen=True)
class Setting:
    """One setting of a method, as its config dataclass declares it: the field's name is the setting's one name
    (in errors, YAML, sweep axes, MLflow params); ``aliases`` are shorter spellings users may also write (a
    CLI flag, a sweep axis), taken from the field's ``metadata['aliases']``."""

    name: str
    help: str
    aliases: tuple[str, ...]
    type: Any  # the resolved annotation, e.g. ``int | None``
    default: Any

    @property
    def spellings(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def scalar(self) -> type | None:
        """``bool``, ``int`` or ``float`` when the setting holds one such value (None allowed), else None."""
        args = typing.get_args(self.type) if isinstance(self.type, types.UnionType) else (self.type,)
        kinds = [a for a in args if a is not type(None)]
        return kinds[0] if len(kinds) == 1 and kinds[0] in (bool, int, float) else None


@dataclass
class AdapterConfig:
    """Fields every method has. Subclasses add their own, each with ``metadata['help']`` (and optionally
    ``metadata['aliases']``: other spellings a user may write for it)."""

    method: ClassVar[str] = ""

    r: int = field(default=16, metadata={"help": "LoRA rank r: A is r×n, B is m×r.", "aliases": ("rank",)})
    alpha: float | None = field(
        default=None, metadata={"help": "Scale numerator: output is scaled by alpha/r. Default: alpha = r."}
    )
    dropout: float = field(
        default=0.1,
        metadata={
            "help": "Dropout on the adapter path's input x, in [0, 1); routers always read the clean x. "
            "Default 0.1, what the CoMoL authors' train.py sets for every method they compare."
        },
    )
    target_modules: list[str] | str = field(
        default_factory=lambda: list(DEFAULT_TARGETS),
        metadata={
            "help": "Leaf names of Linear modules to adapt (suffix match), or one regex (full match).",
            "aliases": ("targets",),
        },
    )
    # Provenance, not a setting: it says which base the adapter was trained on.
    base_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Base model id or path, recorded in adapter_config.json.", "setting": False}
    )

    def __post_init__(self) -> None:
        if self.alpha is None:
            self.alpha = float(self.r)
        if isinstance(self.target_modules, tuple):
            self.target_modules = list(self.target_modules)
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r <= 0:
            raise ConfigError("r", f"must be a positive integer, got {self.r!r}")
        if not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha) or self.alpha <= 0:
            raise ConfigError("alpha", f"must be a positive number, got {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", f"must be in [0, 1), got {self.dropout!r}")
        if isinstance(self.target_modules, list):
            if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
                raise ConfigError("target_modules", "must be a non-empty list of module names or a regex")
        elif not isinstance(self.target_modules, str) or not self.target_modules:
            raise ConfigError("target_modules", "must be a non-empty list of module names or a regex")

    @property
    def scale(self) -> float:
        return float(self.alpha) / self.r

    def for_module(self, module_name: str, depth: int | None, num_layers: int | None) -> AdapterConfig:
        """The config for one adapted module; methods with per-layer settings override this."""
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        """The config a saved ``adapter_config.json`` describes. Strict, because the file decides what the loaded
        weights compute: a key this method does not know (``use_dora``, a misspelling) or a label of another
        method is an error, never silently dropped; so is a missing core setting (a default would misread it)."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names) - set(RECORD_KEYS))
        if unknown:
            raise ConfigError(unknown[0], f"is not a setting of method {cls.method!r}", allowed=names)
        labelled = data.get("method", cls.method)
        if labelled != cls.method:
            raise ConfigError("method", f"says {labelled!r} but the adapter type is {cls.method!r}")
        missing = [name for name in REQUIRED_KEYS if name not in data]
        if missing:
            raise ConfigError(missing[0], f"is required in a saved {cls.method} adapter config")
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except (TypeError, ValueError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError("adapter config", f"a setting has the wrong type: {err}") from None

    @classmethod
    def field_help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}

    @classmethod
    def settings(cls) -> dict[str, Setting]:
        """The method's settings by name, in field order (provenance fields left out)."""
        hints = typing.get_type_hints(cls)
        out = {}
        for f in dataclasses.fields(cls):
            if f.metadata.get("setting", True):
                default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                aliases = tuple(f.metadata.get("aliases", ()))
                out[f.name] = Setting(f.name, f.metadata.get("help", ""), aliases, hints[f.name], default)
        return out


def experts_field(default: int | None, help: str) -> Any:
    """``num_experts``, the expert count N of every mixture method (users may also write ``experts``)."""
    return field(default=default, metadata={"help": help, "aliases": ("experts",)})


def kaiming_init_(tensor: torch.Tensor) -> None:
    """PEFT LoRA's A initialisation: kaiming-uniform with a=√5 (about U(±1/√fan_in))."""
    nn.init.kaiming_uniform_(tensor, a=math.sqrt(5))


class AdapterLayer(nn.Module, BaseTunerLayer):
    """Wraps a frozen ``nn.Linear`` and adds ``delta(x)`` to its output.

    Subclasses create their weights in ``__init__`` (via :meth:`_linear` / :meth:`_parameter`) and implement
    :meth:`delta`, which receives the CLEAN input: routers, threshold heads and pools read it as the authors'
    layers do (``gate(x)``), and the adapter path applies ``self.dropout`` itself. The adapter computes in its
    own weights' dtype (fp32 adapters on a bf16 base work) and casts the result back to the base output's dtype.
    """

    config_cls: ClassVar[type[AdapterConfig]] = AdapterConfig
    adapter_layer_names: tuple[str, ...] = ()
    # Layers that need the model call's padding mask (balancing counts, SMEAR's route) set this; inject_adapter
    # then puts the call's 2-D attention_mask on ``self.attention_mask`` (see comol.injection.attach_call_masks).
    uses_attention_mask: ClassVar[bool] = False
    # Layers that route on the prompt (SMEAR) set this; the same pre-hook then also hands them the call's
    # ``prompt_mask`` keyword (popped before the model sees it) and how many tokens the call's cache holds.
    uses_prompt_mask: ClassVar[bool] = False

    def __init__(self, base_layer: nn.Linear, config: AdapterConfig, adapter_name: str = DEFAULT_ADAPTER):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"{type(self).__name__} wraps nn.Linear, got {type(base_layer).__name__}")
        self.base_layer = base_layer
        self.config = config
        self.in_features = base_layer.in_features
        self.out_features = base_layer.out_features
        self.scaling = config.scale
        self._active_adapter = adapter_name
        self.merged_adapters = []
        self._aux_loss: torch.Tensor | None = None
        self.attention_mask: torch.Tensor | None = None
        self.prompt_mask: torch.Tensor | None = None
        self.past_length = 0
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()

    # --- construction helpers -------------------------------------------------------------------
    def _container(self, name: str, kind: type[nn.Module]) -> Any:
        if name not in self._modules:
            setattr(self, name, kind())
        return getattr(self, name)

    def _factory(self) -> dict[str, Any]:
        """Adapter weights live on the base weight's device (meta included) in float32."""
        return {"device": self.base_layer.weight.device, "dtype": torch.float32}

    def _linear(self, name: str, fan_in: int, fan_out: int, init: str) -> nn.Linear:
        layer = nn.Linear(fan_in, fan_out, bias=False, **self._factory())
        if init == "zeros":
            nn.init.zeros_(layer.weight)
        elif init == "kaiming":
            kaiming_init_(layer.weight)
        # "default": nn.Linear's own init (routers)
        self._container(name, nn.ModuleDict)[self.active_adapter] = layer
        return layer

    def _parameter(self, name: str, tensor: torch.Tensor, trainable: bool = True) -> nn.Parameter:
        param = nn.Parameter(tensor, requires_grad=trainable)
        self._container(name, nn.ParameterDict)[self.active_adapter] = param
        return param

    def _get(self, name: str) -> Any:
        return getattr(self, name)[self.active_adapter]

    @classmethod
    def upgrade_saved(cls, tensors: dict[str, torch.Tensor], version: int) -> dict[str, torch.Tensor]:
        """Saved tensors (PEFT keys) written in adapter format ``version`` → the current layout; a method whose
        layout changed between versions overrides this, so adapters recorded earlier keep their outputs."""
        return tensors

    # --- forward --------------------------------------------------------------------------------
    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's additive output for the clean input ``x`` (already in adapter dtype), without scale.
        Apply ``self.dropout`` on the adapter path only, never before a router."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        result = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return result
        out = self.delta(x.to(self._adapter_dtype()))
        return result + (out * self.scaling).to(result.dtype)

    def _adapter_dtype(self) -> torch.dtype:
        for name in self.adapter_layer_names:
            for value in self._modules[name].parameters():
                return value.dtype
        return self.base_layer.weight.dtype

    def flops_per_token(self) -> int:
        """Forward FLOPs (2 × multiply-accumulates) this layer's adapter adds per token."""
        raise NotImplementedError

    # --- padding mask (layers with ``uses_attention_mask``) --------------------------------------
    def token_mask(self, examples: int, length: int) -> torch.Tensor | None:
        """(examples, T): 1 for real tokens, 0 for padding, for an input of ``examples`` × ``length`` tokens;
        None when the call gave no mask. During cached generation the mask covers past + current tokens and
        the current ones are its last T columns."""
        mask = self.attention_mask
        if mask is None:
            return None
        if mask.shape[0] != examples or mask.shape[1] < length:
            raise ValueError(
                f"{type(self).__name__}: attention_mask of shape {tuple(mask.shape)} does not fit {examples} "
                f"examples of {length} tokens"
            )
        return mask[:, mask.shape[1] - length :]

    def real_tokens(self, x: torch.Tensor) -> torch.Tensor | None:
        """``x.shape[:-1]``: which positions of an (..., T, n) input are real tokens; None without a mask or
        for a flat (tokens, n) input, whose examples are unknown."""
        if x.dim() < 3:
            return None
        mask = self.token_mask(math.prod(x.shape[:-2]), x.shape[-2])
        return None if mask is None else mask.reshape(x.shape[:-1])

    # --- auxiliary loss hook ---------------------------------------------------------------------
    def aux_loss(self) -> torch.Tensor | None:
        """This layer's auxiliary (load-balancing) loss from its last forward, or None."""
        return self._aux_loss

    # --- non-gradient updates after backward (see comol.injection.after_backward) -----------------
    def update_statistics(self) -> torch.Tensor | None:
        """Counts this layer gathered in its last training forward that steer a non-gradient update (FlyLoRA's
        balancing bias), or None. They are summed over data-parallel ranks before :meth:`apply_update`, so the
        forward itself never runs a collective."""
        return None

    def apply_update(self, totals: torch.Tensor) -> None:
        """Apply the update from :meth:`update_statistics` summed over every rank."""

    # --- merging ---------------------------------------------------------------------------------
    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        raise NotImplementedError(
            f"{self.config.method} cannot be merged into the base weight: its mixing weights depend on "
            "the input token, so there is no single weight update to fold in."
        )

    def unmerge(self) -> None:
        raise NotImplementedError(f"{self.config.method} layers are never merged")

    def extra_repr(self) -> str:
        return f"method={self.config.method}, r={self.config.r}, scale={self.scaling:g}"
