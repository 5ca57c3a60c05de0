"""Plain LoRA, delegated to PEFT's own LoraConfig and layers, so it is LoRA exactly as users know it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from peft import LoraConfig as PeftLoraConfig

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
        return cls(
            r=data["r"],
            alpha=data["lora_alpha"],
            dropout=data.get("lora_dropout", 0.0),
            target_modules=data["target_modules"],
            base_model_name_or_path=data.get("base_model_name_or_path"),
        )
