"""Forward+backward cost of one adapted linear layer for every method, as ratios to PEFT's own LoRA.

Setup (default): one frozen ``nn.Linear(4096, 4096)``, input (8 examples × 512 tokens, 4096) in fp32 that
requires grad (as a layer inside a network does, so backward also computes the input gradient), r = 16,
N ∈ {8, 64}, all adapters injected by ``comol.inject_adapter`` (LoRA through PEFT's ``inject_adapter_in_model``,
so PEFT's own ``lora.Linear`` runs). One training step = forward, then backward of a fixed random output
gradient, plus the method's auxiliary loss where it has one (MoLA, AdaMoLE).

Two views of each step:
- layer: the whole adapted layer, frozen W x included (what a training step pays);
- adapter: only what the adapter adds (our ``delta`` × scale; for PEFT LoRA its own ``lora_B(lora_A(dropout(x)))``
  × scale), since the frozen matmul is identical for every method and dominates the layer's time.

Time: median of ``--repeats`` timed steps after ``--warmup`` untimed ones; variants are interleaved in a
rotating order, so load drift on a shared machine hits all of them alike. ``--clock wall`` (default) times
wall-clock; ``--clock cpu`` times this process's CPU seconds (all its threads), which other jobs on a shared
machine do not inflate: with ``--threads 1`` it is the work itself, free of waits for a time slice.

Memory: the peak of bytes held by PyTorch's CPU allocator during one step, above the level before it
(allocation events from ``torch.profiler`` with ``profile_memory=True``): outputs, activations saved for
backward, temporaries and gradients; not Python's or the allocator's own overhead.

Every ratio divides by PEFT LoRA measured in the same run.

SMEAR routes each example on its prompt: the first ``--prompt-share`` of every example's tokens (default a
quarter, like a ~75-token Alpaca prompt in a 300-token math example) is marked as the prompt. Its positions
before the prompt's last token route on their own prefix and mix the experts per token; the rest share one
merged expert.

Run: ``python benchmarks/adapter_speed.py`` (full) or ``--quick`` (n = m = 1024, 1024 tokens, N = 8).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # the profiler warns about blocks freed from before it ran

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.profiler import ProfilerActivity, profile

from comol import inject_adapter, make_config
from comol.methods import AdapterLayer


@dataclass
class Variant:
    label: str
    method: str | None  # None: the frozen Linear alone
    experts: int | None = None
    fields: dict = field(default_factory=dict)
    forward_mode: str | None = None  # CoMoL: "merged" or "output"


def variants(expert_counts: list[int]) -> list[Variant]:
    out = [Variant("frozen Linear, no adapter", None), Variant("PEFT LoRA", "lora"), Variant("FlyLoRA", "flylora")]
    for n_experts in expert_counts:
        out += [
            Variant("CoMoL merged", "comol", n_experts, forward_mode="merged"),
            Variant("CoMoL output-level", "comol", n_experts, forward_mode="output"),
            Variant("CoMoL w/o CR", "comol", n_experts, {"core_routing": False}),
            Variant("MoLoRA (soft)", "molora", n_experts),
            Variant("HydraLoRA", "hydralora", n_experts),
            Variant("MoLA (top-2)", "mola", n_experts),
            Variant("AdaMoLE", "adamole", n_experts),
            Variant("SMEAR", "smear", n_experts),
        ]
    return out


def selected(variant: Variant, only: list[str] | None) -> bool:
    return not only or any(word.lower() in variant.label.lower() for word in only)


class Holder(nn.Module):
    """The smallest model ``inject_adapter`` can target: one Linear named ``proj``."""

    def __init__(self, base: nn.Linear):
        super().__init__()
        self.proj = base


def build(variant: Variant, base: nn.Linear, rank: int) -> nn.Module:
    """The adapted layer (B random, so nothing rides on zeros); all variants share one frozen base Linear."""
    holder = Holder(base)
    if variant.method is None:
        return base
    fields = dict(variant.fields, r=rank, target_modules=["proj"])
    if variant.experts is not None:
        fields["num_experts"] = variant.experts
    inject_adapter(holder, make_config(variant.method, **fields))
    layer = holder.proj
    if variant.forward_mode is not None:
        layer.forward_mode = variant.forward_mode
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if p.requires_grad and "_B" in name:
                p.normal_(0, 0.02)
    return layer.train()


def adapter_only(layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """What the adapter adds to W x, computed the way the layer's own forward computes it."""
    if isinstance(layer, AdapterLayer):
        return lambda x: layer.delta(x) * layer.scaling
    name = layer.active_adapters[0]  # PEFT's lora.Linear
    return lambda x: layer.lora_B[name](layer.lora_A[name](layer.lora_dropout[name](x))) * layer.scaling[name]


def clear_grads(layer: nn.Module, x: torch.Tensor) -> None:
    x.grad = None
    for p in layer.parameters():
        p.grad = None


def step(layer: nn.Module, fn: Callable, x: torch.Tensor, grad_out: torch.Tensor) -> None:
    """One forward + backward; gradients are dropped first so every step allocates the same."""
    clear_grads(layer, x)
    out = fn(x)
    outputs, grads = [out], [grad_out]
    if isinstance(layer, AdapterLayer) and (extra := layer.aux_loss()) is not None:
        outputs.append(extra)
        grads.append(torch.ones_like(extra))
    torch.autograd.backward(outputs, grads)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """The profiler's C++ side prints start/stop lines on fd 2 on every run; keep them out of the table."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def peak_bytes(run: Callable[[], None]) -> int:
    """Peak of PyTorch CPU allocator bytes during ``run()``, above the level before it."""
    with native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    level = peak = 0
    for event in events:
        level += event.nbytes()
        peak = max(peak, level)
    return peak


def measure(args: argparse.Namespace) -> tuple[list[Variant], dict, dict]:
    torch.manual_seed(0)
    n, tokens = args.features, args.tokens
    base = nn.Linear(n, n, bias=False).requires_grad_(False)
    x = torch.randn(args.examples, tokens // args.examples, n, requires_grad=True)
    grad_out = torch.randn(args.examples, tokens // args.examples, n)
    chosen = [v for v in variants(args.experts) if v.method in (None, "lora") or selected(v, args.only)]
    layers = [build(v, base, args.rank) for v in chosen]
    length = tokens // args.examples
    prompt = (torch.arange(length) < round(args.prompt_share * length)).long().expand(args.examples, -1)
    for layer in layers:
        if getattr(layer, "uses_prompt_mask", False):
            layer.prompt_mask = prompt
    views = {"layer": [lambda x, layer=layer: layer(x) for layer in layers]}
    views["adapter"] = [adapter_only(layer) if v.method else None for v, layer in zip(chosen, layers, strict=True)]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times: dict = {(view, i): [] for view in views for i in range(len(chosen))}
    memory: dict = {}
    for rep in range(args.warmup + args.repeats):
        for k in range(len(chosen)):
            i = (k + rep) % len(chosen)
            for view, fns in views.items():
                if fns[i] is None:
                    continue
                start = clock()
                step(layers[i], fns[i], x, grad_out)
                if rep >= args.warmup:
                    times[view, i].append(clock() - start)
        if rep == 0:  # after one warm-up step each, so lazy allocations are out of the way
            for i, layer in enumerate(layers):
                for view, fns in views.items():
                    if fns[i] is not None:
                        clear_grads(layer, x)  # so the step's own gradients count, not last step's freed ones
                        memory[view, i] = peak_bytes(lambda layer=layer, fn=fns[i]: step(layer, fn, x, grad_out))
    medians = {key: statistics.median(values) for key, values in times.items() if values}
    return chosen, medians, memory


def report(args: argparse.Namespace, chosen: list[Variant], medians: dict, memory: dict) -> Table:
    lora = next(i for i, v in enumerate(chosen) if v.method == "lora")
    table = Table(
        title=f"one Linear {args.features}→{args.features}, {args.tokens} tokens, r={args.rank}, fp32 CPU, "
        f"{torch.get_num_threads()} thread(s): forward+backward",
        caption=f"time: median {args.clock} time of {args.repeats} steps after {args.warmup} warm-up; peak: "
        "torch CPU allocator bytes above the step's start; ×LoRA: ratio to PEFT LoRA measured in this run",
    )
    for column in ("variant", "N", "layer ms", "layer ×LoRA", "adapter ms", "adapter ×LoRA"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for column in ("layer peak MiB", "layer peak ×LoRA", "adapter peak MiB", "adapter peak ×LoRA"):
        table.add_column(column, justify="right")

    def cells(view: str, i: int, values: dict, scale: float, fmt: str) -> list[str]:
        if (view, i) not in values:
            return ["—", "—"]
        return [format(values[view, i] * scale, fmt), f"{values[view, i] / values[view, lora]:.3f}"]

    for i, v in enumerate(chosen):
        row = [v.label, str(v.experts) if v.experts else "—"]
        row += cells("layer", i, medians, 1e3, ".1f") + cells("adapter", i, medians, 1e3, ".1f")
        row += cells("layer", i, memory, 2**-20, ".1f") + cells("adapter", i, memory, 2**-20, ".1f")
        table.add_row(*row, end_section=v.method in (None, "flylora"))
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: n=m=1024, 1024 tokens, N=8, 3 repeats")
    parser.add_argument("--features", type=int, default=4096, help="n = m")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--examples", type=int, default=8, help="the tokens are split into this many examples")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument(
        "--prompt-share", type=float, default=0.25, help="SMEAR: the share of each example that is prompt"
    )
    parser.add_argument("--experts", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--only", nargs="+", default=None, metavar="WORD", help="keep variants whose label contains a WORD (+ LoRA)"
    )
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="wall-clock or process CPU time")
    args = parser.parse_args(argv)
    if args.quick:
        args.features, args.tokens, args.experts, args.warmup, args.repeats = 1024, 1024, [8], 1, 3
    if args.tokens % args.examples:
        parser.error("--tokens must be a multiple of --examples")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    chosen, medians, memory = measure(args)
    Console(width=200).print(report(args, chosen, medians, memory))


if __name__ == "__main__":
    main()
