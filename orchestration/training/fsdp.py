"""FSDP2 sharding, the same code on GPUs (NCCL) and CPUs (gloo).

``ray.train.torch.prepare_model(parallel_strategy="fsdp")`` refuses CPUs, so the model is sharded
here with ``fully_shard``: each decoder layer, then the root, on a 1-D device mesh over all workers.
The frozen base is sharded too (it is most of the memory); adapter weights stay fp32 masters. With
bf16 the base is loaded in bf16 and compute runs in bf16 while gradients reduce in fp32.

Weights are read once per run: every rank shards an empty (meta-device) model and materialises only its
shard; rank 0 alone reads the checkpoint and broadcasts it tensor by tensor (:func:`fill_from_rank0`), so
no other rank ever holds a full copy of the base model.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from orchestration.models import decoder_layers


def build_mesh(device: torch.device, world_size: int, shard_size: int | None = None) -> DeviceMesh:
    """The workers' mesh ("cpu" for gloo, "cuda" for NCCL).

    ``shard_size`` workers share one copy of the parameters (each holds 1/shard_size of it); groups of that
    size replicate each other (HSDP: gradients reduce-scatter within a group and all-reduce across groups).
    All workers (the default) is plain FSDP, what a model too large for one device needs. 1 replicates the
    whole model on every worker and only gradients travel, which suits a small model on CPUs, where
    gathering the frozen base every forward and backward costs more than the compute.
    """
    shard_size = shard_size or world_size
    if shard_size == world_size:
        return init_device_mesh(device.type, (world_size,))
    return init_device_mesh(device.type, (world_size // shard_size, shard_size), mesh_dim_names=("replicate", "shard"))


def adapters_to_fp32(model: nn.Module) -> None:
    """Trainable (adapter) weights as fp32 masters, whatever the base dtype (PEFT may follow the base)."""
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()


def shard_model(model: nn.Module, mesh: DeviceMesh, bf16: bool) -> nn.Module:
    """``fully_shard`` every decoder layer, then the root (embeddings, final norm, LM head)."""
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    )
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def fill_from_rank0(model: nn.Module, source: nn.Module | None) -> None:
    """Collective: fill the sharded, materialised ``model`` on every rank from rank 0's ``source``.

    ``source`` (rank 0 only; None elsewhere) is the same architecture unsharded, with real weights and
    adapters. Torch's state-dict API sends one tensor at a time and each rank keeps only its slice, so a
    rank's peak is its shard plus the largest single tensor. Non-persistent buffers (rotary ``inv_freq``)
    are in no state dict: rank 0 sends its own, so every rank holds exactly what the source computed.
    """
    full = source.state_dict() if source is not None else {}
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    persistent = set(model.state_dict())
    source_buffers = dict(source.named_buffers()) if source is not None else {}
    for name, buffer in model.named_buffers():
        if name in persistent:
            continue
        if source is not None:
            buffer.copy_(source_buffers[name])
        dist.broadcast(buffer, src=0)


def clip_grad_norm(params: list[nn.Parameter], max_norm: float | None) -> float:
    """The global gradient norm (over all shards), clipping to ``max_norm`` when given."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(grads, max_norm if max_norm is not None else float("inf"))
    if hasattr(norm, "full_tensor"):  # a DTensor under FSDP2
        norm = norm.full_tensor()
    return float(norm)
