"""Shared pieces of the mixture-of-LoRA-experts baselines (not a method itself: nothing here is registered)."""

from comol.methods.moe.config import ExpertsConfig, check_int, check_nonnegative
from comol.methods.moe.layer import ExpertsLayer
from comol.methods.moe.losses import load_balancing_loss

__all__ = ["ExpertsConfig", "ExpertsLayer", "check_int", "check_nonnegative", "load_balancing_loss"]
