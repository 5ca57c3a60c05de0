"""Whole-model training-step throughput (tokens/s) of CoMoL vs PEFT LoRA and MoLoRA.

One step is what a training worker does per micro-batch: forward of the full causal LM with adapters,
token cross-entropy plus ``comol.aux_loss``, backward, gradient clipping, and an AdamW step on the
adapter weights. Every method gets the same base model (fresh copy, same weights), the same batch of
token ids, the same rank r (and experts N for the mixtures) and the same target modules.

Timing: ``--warmup`` untimed steps per method, then ``--rounds`` rounds in which every method runs
``--steps`` timed steps, in a rotating order, so load drift on a shared machine hits all methods alike;
the figure per method is the median step time over all its timed steps. ``--clock cpu`` times this
process's CPU seconds (immune to other jobs on a shared machine), ``--clock wall`` (default) real time.
Every ratio divides by PEFT LoRA measured in the same run. Target: CoMoL ≤ 1.10× LoRA step time.

Memory: the peak a step adds above the resting model (activations, gradients, optimizer state, temporaries),
measured once per method after warm-up: ``torch.cuda.max_memory_allocated`` on a GPU, PyTorch's CPU allocator
events (``adapter_speed.peak_bytes``) on a CPU. MFU: tokens/s × training FLOPs per token of a frozen base plus
adapters (``orchestration.training.metrics``) ÷ the device's dense bf16 peak (known GPUs, or $COMOL_PEAK_TFLOPS).

Run: ``python benchmarks/train_step.py`` (SmolLM2-135M, batch 8 × 128 tokens), ``--quick`` (tiny model), or
``--model-config CONFIG.json`` (any causal LM config, random weights). On a GPU, ``--device cuda`` runs the bf16
base with fp32 adapters under autocast. ``--json FILE`` also writes every figure as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from comol import aux_loss, inject_adapter, make_config
from orchestration.models import SMOLLM2
from orchestration.training.metrics import PEAK_ENV, peak_flops, train_flops_per_token

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]


@dataclass
class Variant:
    method: str
    fields: dict
    step_s: list[float] = field(default_factory=list)
    trainable: int = 0
    flops_per_token: float = 0.0
    peak_step_bytes: int | None = None


def variants(rank: int, experts: int) -> list[Variant]:
    """LoRA (the baseline every ratio divides by), CoMoL, and MoLoRA (N full LoRAs: what CoMoL's cores save)."""
    experts_fields = {"r": rank, "num_experts": experts}
    return [Variant("lora", {"r": rank}), Variant("comol", experts_fields), Variant("molora", experts_fields)]


def random_config(path: Path):
    """A transformers config from a ``config.json``-style file (``model_type`` plus its fields)."""
    from transformers import AutoConfig

    data = json.loads(path.read_text())
    return AutoConfig.for_model(data.pop("model_type"), **data)


def build_base(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> Callable[[], torch.nn.Module]:
    """A factory of identical base models: random ones are rebuilt from the same seed on ``device`` (no host copy
    of a multi-GB model), loaded ones are read once and their state dict copied per method."""
    from transformers import AutoModelForCausalLM

    if args.quick or args.model_config:
        if args.quick:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/tiny_models.py
            from tiny_models import tiny_config

            config = tiny_config(
                vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=4, max_position_embeddings=512
            )
        else:
            config = random_config(args.model_config)

        def make_random() -> torch.nn.Module:
            torch.manual_seed(0)
            with torch.device(device):
                model = AutoModelForCausalLM.from_config(config, dtype=dtype)
            model.config.use_cache = False
            return model

        return make_random
    from orchestration.models import load_model

    reference = load_model(args.model)
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    config = reference.config
    del reference

    def make() -> torch.nn.Module:
        model = AutoModelForCausalLM.from_config(config)
        model.load_state_dict(state)
        model.config.use_cache = False
        return model

    return make


def prepare(variant: Variant, make_base, device: torch.device, bf16: bool):
    model = make_base().to(dtype=torch.bfloat16 if bf16 else torch.float32)
    torch.manual_seed(0)
    inject_adapter(model, make_config(variant.method, target_modules=TARGETS, **variant.fields))
    for param in model.parameters():
        if param.requires_grad:
            param.data = param.data.float()  # fp32 adapter weights, as training runs them
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    variant.trainable = sum(p.numel() for p in params)
    variant.flops_per_token = train_flops_per_token(model)
    return model, params, torch.optim.AdamW(params, lr=1e-4)


def train_step(model, params, optimizer, ids: torch.Tensor, device: torch.device, bf16: bool) -> None:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=ids).logits
    loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1))
    (loss + aux_loss(model)).backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def peak_step_bytes(run: Callable[[], None], device: torch.device) -> int:
    """Peak bytes one step adds above the resting level (model, gradients and optimizer state already there)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        resting = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - resting
    from adapter_speed import peak_bytes  # benchmarks/ is on the path when this file runs

    return peak_bytes(run)


def clock(kind: str, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.process_time() if kind == "cpu" else time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=SMOLLM2, help="model spec (orchestration.models)")
    parser.add_argument("--quick", action="store_true", help="a tiny random Llama instead of --model")
    parser.add_argument("--model-config", type=Path, default=None, help="config.json of a random-weight model")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per method per round")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bf16 = device.type == "cuda"
    console = Console(width=200)

    chosen = variants(args.rank, args.experts)
    notes: list[str] = []
    make_base = build_base(args, device, torch.bfloat16 if bf16 else torch.float32)
    runs = {v.method: prepare(v, make_base, device, bf16) for v in chosen}
    vocab = runs[chosen[0].method][0].config.vocab_size
    base_params = sum(p.numel() for p in runs[chosen[0].method][0].parameters() if not p.requires_grad)
    ids = torch.randint(0, vocab, (args.batch, args.seq_len), generator=torch.Generator().manual_seed(0)).to(device)
    for variant in chosen:
        for _ in range(args.warmup):
            train_step(*runs[variant.method], ids, device, bf16)
        one_step = lambda v=variant: train_step(*runs[v.method], ids, device, bf16)  # noqa: E731
        variant.peak_step_bytes = peak_step_bytes(one_step, device)
    for round_index in range(args.rounds):
        order = chosen[round_index % len(chosen) :] + chosen[: round_index % len(chosen)]
        for variant in order:
            for _ in range(args.steps):
                start = clock(args.clock, device)
                train_step(*runs[variant.method], ids, device, bf16)
                variant.step_s.append(clock(args.clock, device) - start)

    tokens = args.batch * args.seq_len
    peak = peak_flops(device)
    base = statistics.median(chosen[0].step_s)
    model_name = "tiny Llama" if args.quick else str(args.model_config or args.model)
    table = Table(
        title=f"training step, {model_name} ({base_params / 1e6:,.0f} M base parameters), batch {args.batch}×"
        f"{args.seq_len} tokens, r={args.rank}, N={args.experts}, {args.clock} clock, {torch.get_num_threads()} "
        f"threads, {device}{', bf16 base' if bf16 else ''}"
    )
    columns = ("method", "trainable params", "median step (ms)", "tokens/s", "step time ÷ LoRA", "tokens/s ÷ LoRA")
    for column in (*columns, "peak step MiB", "peak ÷ LoRA", "MFU"):
        table.add_column(column, justify="right" if column != "method" else "left")
    results = {}
    for variant in chosen:
        step = statistics.median(variant.step_s)
        utilisation = tokens / step * variant.flops_per_token / peak if peak else None
        results[variant.method] = {
            "trainable_params": variant.trainable,
            "median_step_s": step,
            "tokens_per_s": tokens / step,
            "step_time_vs_lora": step / base,
            "peak_step_bytes": variant.peak_step_bytes,
            "peak_step_vs_lora": variant.peak_step_bytes / chosen[0].peak_step_bytes,
            "flops_per_token": variant.flops_per_token,
            "mfu": utilisation,
        }
        table.add_row(
            variant.method,
            f"{variant.trainable:,}",
            f"{step * 1e3:.1f}",
            f"{tokens / step:,.0f}",
            f"{step / base:.3f}",
            f"{base / step:.3f}",
            f"{variant.peak_step_bytes / 2**20:,.1f}",
            f"{results[variant.method]['peak_step_vs_lora']:.3f}",
            "—" if utilisation is None else f"{utilisation:.1%}",
        )
    console.print(table)
    if peak is None:
        notes.append(f"MFU needs the device's peak: a known GPU, or ${PEAK_ENV} in TFLOP/s")
    for note in notes:
        console.print(f"note: {note}")
    ratio = statistics.median(chosen[1].step_s) / base
    verdict = "meets" if ratio <= 1.10 else "MISSES"
    console.print(f"CoMoL step time = {ratio:.3f}× LoRA: {verdict} the target (≤ 1.10×)")
    if args.json:
        setup = {
            "model": model_name,
            "base_params": base_params,
            "batch": args.batch,
            "seq_len": args.seq_len,
            "rank": args.rank,
            "experts": args.experts,
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "bf16_base": bf16,
            "peak_tflops": peak / 1e12 if peak else None,
            "clock": args.clock,
            "timed_steps_per_method": args.rounds * args.steps,
        }
        summary = {"setup": setup, "methods": results, "comol_vs_lora_step_time": ratio, "notes": notes}
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
