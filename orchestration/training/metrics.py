"""Per-logging-step numbers: throughput, peak memory, and model FLOPs utilisation (MFU, GPUs only).

MFU counts the FLOPs a frozen-base adapter step really needs per token: forward 2·N_base, backward
2·N_base (gradients w.r.t. activations only: the base gets no weight gradients), and 6·N_adapter.
Attention score FLOPs are left out (small at these sequence lengths), so MFU is a slight under-estimate.
"""

from __future__ import annotations

import os
import resource
import sys
import time

import torch
from torch import nn

# Dense bf16 peak TFLOP/s per GPU, by a substring of the device name; $COMOL_PEAK_TFLOPS overrides.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}
PEAK_ENV = "COMOL_PEAK_TFLOPS"


def train_flops_per_token(model: nn.Module) -> float:
    """FLOPs per trained token of a frozen base plus trainable adapters (embeddings not counted)."""
    embeddings = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad and id(p) not in embeddings)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return 4.0 * frozen + 6.0 * trainable


def peak_flops(device: torch.device) -> float | None:
    """The accelerator's dense bf16 peak in FLOP/s, or None when unknown (CPUs)."""
    if os.environ.get(PEAK_ENV):
        return float(os.environ[PEAK_ENV]) * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_BF16_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


def peak_memory_gb(device: torch.device) -> float:
    """Peak allocated accelerator memory, or the process's peak resident memory on CPUs."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**30 if sys.platform == "darwin" else 2**20)


class Throughput:
    """Tokens (non-padding, all workers) per second since the last ``read``."""

    def __init__(self) -> None:
        self.tokens = 0
        self.start = time.perf_counter()

    def add(self, tokens: int) -> None:
        self.tokens += tokens

    def read(self) -> tuple[float, float]:
        """(tokens per second, seconds) for the window, then start a new window."""
        now = time.perf_counter()
        seconds = max(now - self.start, 1e-9)
        rate = self.tokens / seconds
        self.tokens, self.start = 0, now
        return rate, seconds


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None, world_size: int) -> float | None:
    if not peak:
        return None
    return tokens_per_s * flops_per_token / (peak * world_size)
