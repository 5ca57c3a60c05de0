"""Plain LoRA, delegated to PEFT's own LoraConfig and layers, so it is LoRA exactly as users know it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from peft import LoraConfig as PeftLoraConfig

from comol.errors import ConfigError
from comol.methods.base import AdapterConfig


@dataclass
class LoRAConfig(AdapterConfig):
    """Hu et al. 2021: Δy = (alpha/r) · B A x. Injected and saved by PEFT itself."""

    method: ClassVar[str] = "lora"

    def to_peft(self) -> PeftLoraConfig:
        return PeftLoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            target_modules=self.target_modules,
            bias="none",
            task_type="CAUSAL_LM",
            base_model_name_or_path=self.base_model_name_or_path,
        )

    @classmethod
    def from_peft_dict(cls, data: dict) -> LoRAConfig:
        """The config of a PEFT ``LoraConfig`` JSON. A key PEFT does not know, or a PEFT option this plain LoRA
        does not implement set away from its default (``use_dora: true``, ``rank_pattern``, ...), is an error:
        loading such weights as plain LoRA would compute something else."""
        defaults = _jsonable(PeftLoraConfig(task_type="CAUSAL_LM").to_dict())
        for key, value in data.items():
            if key in _READ or key in _METADATA:
                continue
            if key not in defaults:
                raise ConfigError(key, "is not a setting of PEFT's LoraConfig", allowed=sorted(defaults))
            if _jsonable(value) != defaults[key]:
                raise ConfigError(
                    key,
                    f"{value!r} is not supported: comol loads plain LoRA (only r, lora_alpha, lora_dropout and "
                    "target_modules may differ from PEFT's defaults)",
                    allowed=[defaults[key]],
                )
        missing = [key for key in ("r", "lora_alpha", "target_modules") if key not in data]
        if missing:
            raise ConfigError(missing[0], "is required in a saved LoRA adapter config")
        try:
            return cls(
                r=data["r"],
                alpha=data["lora_alpha"],
                dropout=data.get("lora_dropout", 0.0),
                target_modules=data["target_modules"],
                base_model_name_or_path=data.get("base_model_name_or_path"),
            )
        except (TypeError, ValueError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError("adapter config", f"a setting has the wrong type: {err}") from None


# The keys read into the config, and those that describe the file rather than the computation.
_READ = ("r", "lora_alpha", "lora_dropout", "target_modules", "base_model_name_or_path")
_METADATA = (
    "peft_type",
    "task_type",
    "inference_mode",
    "revision",
    "auto_mapping",
    "peft_version",
    "init_lora_weights",
)


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON (sets as sorted lists), so a default compares equal to its file."""
    return json.loads(json.dumps(value, default=lambda v: sorted(v) if isinstance(v, set) else str(v)))
