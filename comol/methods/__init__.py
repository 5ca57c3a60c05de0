"""The method registry: every adapter method by its name, with its config and layer classes.

A method whose ``layer_cls`` is None is injected by PEFT itself (LoRA); the others by
:mod:`comol.injection`, which wraps each target ``nn.Linear`` in the method's layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from comol.errors import ConfigError
from comol.methods.adamole import AdaMoLEConfig, AdaMoLELayer
from comol.methods.base import DEFAULT_TARGETS, AdapterConfig, AdapterLayer, Setting
from comol.methods.comol import CoMoLConfig, CoMoLLayer
from comol.methods.flylora import FlyLoRAConfig, FlyLoRALayer
from comol.methods.hydralora import HydraLoRAConfig, HydraLoRALayer
from comol.methods.lora import LoRAConfig
from comol.methods.mola import MoLAConfig, MoLALayer
from comol.methods.molora import MoLoRAConfig, MoLoRALayer
from comol.methods.smear import SMEARConfig, SMEARLayer


@dataclass(frozen=True)
class Method:
    name: str
    config_cls: type[AdapterConfig]
    layer_cls: type[AdapterLayer] | None  # None: PEFT-native (LoRA)
    peft_type: str  # the adapter_config.json "peft_type" value


METHODS: dict[str, Method] = {
    "lora": Method("lora", LoRAConfig, None, "LORA"),
    "comol": Method("comol", CoMoLConfig, CoMoLLayer, "COMOL"),
    "molora": Method("molora", MoLoRAConfig, MoLoRALayer, "MOLORA"),
    "hydralora": Method("hydralora", HydraLoRAConfig, HydraLoRALayer, "HYDRALORA"),
    "mola": Method("mola", MoLAConfig, MoLALayer, "MOLA"),
    "adamole": Method("adamole", AdaMoLEConfig, AdaMoLELayer, "ADAMOLE"),
    "smear": Method("smear", SMEARConfig, SMEARLayer, "SMEAR"),
    "flylora": Method("flylora", FlyLoRAConfig, FlyLoRALayer, "FLYLORA"),
}


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ConfigError("method", f"unknown method {name!r}", allowed=METHODS) from None


def make_config(method: str, **fields: object) -> AdapterConfig:
    """Build a method's config from keyword fields; a field the method does not have is an error."""
    config_cls = get_method(method).config_cls
    known = set(config_cls.field_help())
    for key in fields:
        if key not in known:
            raise ConfigError(key, f"is not a setting of method {method!r}", allowed=sorted(known))
    return config_cls(**fields)


def all_settings() -> dict[str, dict[str, Setting]]:
    """Every setting name any method has → {method: its Setting}, in the order methods and fields are declared.

    The CLI's flags and the sweep's axes are derived from this, so a field added to a method's config is a
    flag and an axis without further code."""
    out: dict[str, dict[str, Setting]] = {}
    for method in METHODS.values():
        for name, setting in method.config_cls.settings().items():
            out.setdefault(name, {})[method.name] = setting
    return out


__all__ = [
    "DEFAULT_TARGETS",
    "METHODS",
    "AdaMoLEConfig",
    "AdaMoLELayer",
    "AdapterConfig",
    "AdapterLayer",
    "CoMoLConfig",
    "CoMoLLayer",
    "FlyLoRAConfig",
    "FlyLoRALayer",
    "HydraLoRAConfig",
    "HydraLoRALayer",
    "LoRAConfig",
    "Method",
    "MoLAConfig",
    "MoLALayer",
    "MoLoRAConfig",
    "MoLoRALayer",
    "SMEARConfig",
    "SMEARLayer",
    "Setting",
    "all_settings",
    "get_method",
    "make_config",
]
