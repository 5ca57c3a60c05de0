"""Post-training hook: where evaluation runs on the trained model, inside the training job.

=====================================================================================================
POST-TRAINING EVALUATION HOOK
-----------------------------
Configured by ``evaluation: {hook: "package.module:function", options: {...}}`` in the training config. The
shipped hook (``orchestration.evaluation.benchmarks:training_hook``) gets its options as the validated
``BenchmarkOptions``; any other hook gets the mapping as written.
After training, the final adapter is loaded into a fresh, plain (unsharded) copy of the base model on
EVERY rank (rank 0 reads the checkpoint, the others receive it: one read per run), and the hook is called
on every rank as

    function(model, tokenizer, options, *, rank, world_size, device) -> dict[str, float]

``model`` is in eval mode on ``device`` (bf16 base on GPUs), adapter loaded with ``comol.load_adapter``;
``options`` carry ``prompt_template``, the prompt template the adapter was trained with (recorded in its
folder), so the hook wraps its prompts exactly as training did;
it is an ordinary module, so ranks may generate at different speeds. The hook shards its own work by
``rank``/``world_size`` and combines results itself (``torch.distributed`` is initialised: use
``all_gather_object``/``all_reduce``). Return the SAME metrics dict on every rank (or at least on rank
0): rank 0's dict is merged into the run's final metrics with an ``eval/`` prefix and reported to Ray
(so a Tune trial and MLflow see it).
=====================================================================================================
"""

from __future__ import annotations

import importlib
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist

from comol import load_adapter
from orchestration.data.prompts import recorded_template
from orchestration.models import empty_model, load_model
from orchestration.training.config import BenchmarkEvaluation, HookEvaluation
from orchestration.training.fsdp import fill_from_rank0


def resolve_hook(spec: str):
    module_name, _, function_name = spec.partition(":")
    return getattr(importlib.import_module(module_name), function_name)


def run_post_training_hook(
    hook: BenchmarkEvaluation | HookEvaluation | None,
    adapter_dir: Path | None,
    model_spec: str,
    tokenizer,
    *,
    rank: int,
    world_size: int,
    device: torch.device,
    bf16: bool,
) -> dict[str, float]:
    """Collective when configured: every rank evaluates the final adapter; rank 0's metrics, prefixed."""
    if hook is None:
        return {}
    function = resolve_hook(hook.hook)  # fail before loading anything when the hook is misnamed
    # Rank 0 wrote the adapter; ship its files to every rank so no shared filesystem is needed.
    payload = [_read_folder(adapter_dir) if rank == 0 else None]
    dist.broadcast_object_list(payload, src=0)
    with tempfile.TemporaryDirectory(prefix="comol-eval-") as local:
        for name, blob in payload[0].items():
            (Path(local) / name).write_bytes(blob)
        model = evaluation_base(model_spec, torch.bfloat16 if bf16 else torch.float32, device, world_size)
        model, _ = load_adapter(model, local)
        template = recorded_template(local)  # the one it was trained with: every task prompts as training did
    model.to(device).eval()
    if isinstance(hook, BenchmarkEvaluation):
        options = hook.options.model_copy(update={"prompt_template": template})
    else:
        options = {**hook.options, "prompt_template": template}
    metrics = function(model, tokenizer, options, rank=rank, world_size=world_size, device=device)
    return {f"eval/{key}": value for key, value in (metrics or {}).items()}


def evaluation_base(model_spec: str, dtype: torch.dtype, device: torch.device, world_size: int) -> torch.nn.Module:
    """Collective with several workers: this rank's whole, unsharded base for evaluation on ``device``.

    Each rank generates on its own share of the problems, so each needs the whole model; but the checkpoint is
    read once per run: rank 0 loads it, the others build the architecture on the meta device, allocate it on
    their device and receive the weights from rank 0 (the same broadcast training's load uses)."""
    if world_size == 1:
        return load_model(model_spec, dtype=dtype).to(device)
    if dist.get_rank() == 0:
        model = load_model(model_spec, dtype=dtype).to(device)
    else:
        model = empty_model(model_spec, dtype=dtype).to_empty(device=device)
        model.tie_weights()  # allocation gives tied weights separate storage; tie them again before the fill
    fill_from_rank0(model, model if dist.get_rank() == 0 else None)
    return model


def _read_folder(folder: Path | None) -> dict[str, bytes]:
    if folder is None:
        raise ValueError("no adapter folder to evaluate")
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
