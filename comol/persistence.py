"""Save and load adapters in PEFT's on-disk layout: adapter_config.json + adapter_model.safetensors.

PEFT 0.21's ``register_peft_method`` only accepts names already in its closed ``PeftType`` enum, so
an out-of-tree method cannot be registered without patching PEFT. CoMoL layers therefore subclass
PEFT's ``BaseTunerLayer`` and this module writes PEFT's layout itself: tensor keys are
``base_model.model.<module>.<weight>`` with the adapter name removed, as PEFT writes them. LoRA
adapters are written with PEFT's own ``LoraConfig`` and load with ``PeftModel.from_pretrained`` too.
Loading reads safetensors and JSON only: nothing is unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from comol.errors import ConfigError, InputFileError
from comol.injection import adapter_layers, inject_adapter
from comol.methods import METHODS, AdapterConfig
from comol.methods.lora import LoRAConfig
from comol.user_files import read_json

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
_ADAPTER = "default"
# The layout of this library's own methods on disk. 1: cores applied as M x̂ (no key written); 2: as x̂ᵀ M, the
# authors' convention. PEFT's LoRA JSON carries no version: its layout is PEFT's.
FORMAT_KEY = "comol_format_version"
FORMAT_VERSION = 2


def _saved_key(key: str) -> str:
    """PEFT drops the adapter name: ``q_proj.lora_A.default.weight`` → ``q_proj.lora_A.weight``."""
    parts = key.split(".")
    return PEFT_PREFIX + ".".join(p for p in parts if p != _ADAPTER)


def adapter_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor] | None = None) -> dict:
    """The adapter's tensors (parameters and buffers) keyed as PEFT saves them.

    ``state_dict`` may be a full-model state dict gathered elsewhere (e.g. from FSDP shards);
    by default it is ``model.state_dict()``.
    """
    state = model.state_dict() if state_dict is None else state_dict
    prefixes = []
    for name, layer in adapter_layers(model).items():
        prefixes += [f"{name}.{attr}." for attr in layer.adapter_layer_names + layer.other_param_names]
    out = {}
    for key, value in state.items():
        clean = key.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")
        if any(clean.startswith(p) for p in prefixes):
            out[_saved_key(clean)] = value
    return out


def config_to_json(config: AdapterConfig) -> dict:
    if isinstance(config, LoRAConfig):  # PEFT's own LoraConfig JSON, as PeftConfig.save_pretrained writes it
        return {k: sorted(v) if isinstance(v, set) else v for k, v in config.to_peft().to_dict().items()}
    data = config.to_dict()
    data.update(peft_type=METHODS[config.method].peft_type, task_type="CAUSAL_LM")
    data[FORMAT_KEY] = FORMAT_VERSION
    return data


def format_version(data: dict) -> int:
    """The adapter format an ``adapter_config.json`` was written in (1 when it predates the key)."""
    version = data.get(FORMAT_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(FORMAT_KEY, f"must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise ConfigError(
            FORMAT_KEY, f"{version} is newer than this comol reads ({FORMAT_VERSION}): upgrade comol-sweep to load it"
        )
    return version


def config_from_json(data: dict) -> AdapterConfig:
    data = {k: v for k, v in data.items() if k != FORMAT_KEY}
    peft_type = str(data.get("peft_type", "")).upper()
    if peft_type == "LORA":
        return LoRAConfig.from_peft_dict(data)
    for method in METHODS.values():
        if method.peft_type == peft_type:
            return method.config_cls.from_dict(data)
    allowed = [m.peft_type for m in METHODS.values()]
    raise ConfigError("peft_type", f"unknown adapter type {data.get('peft_type')!r}", allowed=allowed)


def save_adapter(
    model: nn.Module,
    directory: str | Path,
    config: AdapterConfig,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in adapter_state_dict(model, state_dict).items()}
    if not tensors:
        raise ValueError("the model has no adapter layers to save")
    save_file(tensors, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})
    (directory / CONFIG_NAME).write_text(json.dumps(config_to_json(config), indent=2, sort_keys=True))
    return directory


def _read_config_json(directory: str | Path) -> dict:
    path = Path(directory) / CONFIG_NAME
    data = read_json(path, "adapter config")
    if not isinstance(data, dict):
        raise InputFileError(path, "adapter config", f"must hold a JSON object, not a {type(data).__name__}")
    return data


def _config_of(directory: str | Path, data: dict) -> AdapterConfig:
    """``config_from_json`` with the file named in its errors."""
    try:
        return config_from_json(data)
    except ConfigError as err:
        raise err.in_file(Path(directory) / CONFIG_NAME) from None


def read_adapter_config(directory: str | Path) -> AdapterConfig:
    return _config_of(directory, _read_config_json(directory))


def _read_weights(directory: str | Path) -> dict[str, torch.Tensor]:
    """The saved tensors; a truncated, corrupt or hostile file (e.g. an oversized header) names the file."""
    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"adapter weights: no such file: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise InputFileError(path, "adapter weights file", f"it is not a readable safetensors file ({err})") from None


def load_adapter(model: nn.Module, directory: str | Path) -> tuple[nn.Module, AdapterConfig]:
    """Inject the saved adapter into a fresh base ``model`` and load its weights (exactly), upgrading an adapter
    written in an older format to the current layout so it computes what it computed when it was saved."""
    data = _read_config_json(directory)
    try:
        version = format_version(data)
    except ConfigError as err:
        raise err.in_file(Path(directory) / CONFIG_NAME) from None
    config = _config_of(directory, data)
    inject_adapter(model, config)
    saved = _read_weights(directory)
    layer_cls = METHODS[config.method].layer_cls
    if layer_cls is not None:
        saved = layer_cls.upgrade_saved(saved, version)
    own = adapter_state_dict(model)
    missing = sorted(set(own) - set(saved))
    unexpected = sorted(set(saved) - set(own))
    where = Path(directory) / WEIGHTS_NAME
    if missing or unexpected:
        raise InputFileError(
            where,
            f"{config.method} adapter",
            f"its tensors do not fit a {config.method} adapter on this model (is it another method's?): "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}",
        )
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in saved.items() if v.shape != own[k].shape]
    if wrong:
        key, got, expected = wrong[0]
        raise InputFileError(
            where,
            f"{config.method} adapter",
            f"{len(wrong)} tensor(s) have the wrong shape for this model and config, e.g. {key} is {list(got)}, "
            f"expected {list(expected)}",
        )
    by_saved = {_saved_key(k): k for k in model.state_dict() if _saved_key(k) in saved}
    target = {by_saved[k]: v for k, v in saved.items()}
    model.load_state_dict(target, strict=False)
    return model, config
