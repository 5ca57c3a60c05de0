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

Run: ``python benchmarks/train_step.py`` (SmolLM2-135M, batch 8 × 128 tokens) or ``--quick`` (tiny model).
On a GPU, ``--device cuda`` runs the bf16 base with fp32 adapters under autocast.
"""

from __future__ import annotations

import argparse
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

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]


@dataclass
class Variant:
    method: str
    fields: dict
    step_s: list[float] = field(default_factory=list)
    trainable: int = 0


def variants(rank: int, experts: int) -> list[Variant]:
    """LoRA (the baseline every ratio divides by), CoMoL, and MoLoRA (N full LoRAs: what CoMoL's cores save)."""
    experts_fields = {"r": rank, "num_experts": experts}
    return [Variant("lora", {"r": rank}), Variant("comol", experts_fields), Variant("molora", experts_fields)]


def build_base(args: argparse.Namespace) -> Callable[[], torch.nn.Module]:
    """A factory of identical base models (state dict kept once, copied per method)."""
    from transformers import AutoModelForCausalLM

    if args.quick:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # tests/tiny_models.py
        from tiny_models import tiny_config

        config = tiny_config(
            vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=4, max_position_embeddings=512
        )
        torch.manual_seed(0)
        reference = AutoModelForCausalLM.from_config(config)
    else:
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
    return model, params, torch.optim.AdamW(params, lr=1e-4)


def train_step(model, params, optimizer, ids: torch.Tensor, device: torch.device, bf16: bool) -> None:
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=ids).logits
    loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1))
    (loss + aux_loss(model)).backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def clock(kind: str, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.process_time() if kind == "cpu" else time.perf_counter()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=SMOLLM2, help="model spec (orchestration.models)")
    parser.add_argument("--quick", action="store_true", help="a tiny random Llama instead of --model")
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
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    bf16 = device.type == "cuda"
    console = Console()

    chosen = variants(args.rank, args.experts)
    make_base = build_base(args)
    vocab = make_base().config.vocab_size
    ids = torch.randint(0, vocab, (args.batch, args.seq_len), generator=torch.Generator().manual_seed(0)).to(device)
    runs = {v.method: prepare(v, make_base, device, bf16) for v in chosen}
    for variant in chosen:
        for _ in range(args.warmup):
            train_step(*runs[variant.method], ids, device, bf16)
    for round_index in range(args.rounds):
        order = chosen[round_index % len(chosen) :] + chosen[: round_index % len(chosen)]
        for variant in order:
            for _ in range(args.steps):
                start = clock(args.clock, device)
                train_step(*runs[variant.method], ids, device, bf16)
                variant.step_s.append(clock(args.clock, device) - start)

    tokens = args.batch * args.seq_len
    base = statistics.median(chosen[0].step_s)
    table = Table(
        title=f"training step, {'tiny Llama' if args.quick else args.model}, batch {args.batch}×{args.seq_len} tokens, "
        f"r={args.rank}, N={args.experts}, {args.clock} clock, {torch.get_num_threads()} threads, {device}"
    )
    for column in ("method", "trainable params", "median step (ms)", "tokens/s", "step time ÷ LoRA", "tokens/s ÷ LoRA"):
        table.add_column(column, justify="right" if column != "method" else "left")
    for variant in chosen:
        step = statistics.median(variant.step_s)
        table.add_row(
            variant.method,
            f"{variant.trainable:,}",
            f"{step * 1e3:.1f}",
            f"{tokens / step:,.0f}",
            f"{step / base:.3f}",
            f"{base / step:.3f}",
        )
    console.print(table)
    ratio = statistics.median(chosen[1].step_s) / base
    verdict = "meets" if ratio <= 1.10 else "MISSES"
    console.print(f"CoMoL step time = {ratio:.3f}× LoRA: {verdict} the target (≤ 1.10×)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
