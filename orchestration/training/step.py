"""One optimizer step and the validation loss, normalised so any worker count gives the same gradients.

The LM loss is the mean over every label token of the GLOBAL batch (all micro-batches, all ranks):
each micro-batch contributes ``sum(token losses) / global_label_tokens``, times the world size
because FSDP averages gradients over ranks. So 1 worker × 4 examples and 2 workers × 2 examples
produce the same update, whatever the padding. The adapters' auxiliary loss (``comol.aux_loss``,
zero for CoMoL and LoRA) is averaged over micro-batches and ranks. After each micro-batch's backward,
``comol.after_backward`` applies the adapters' non-gradient updates (FlyLoRA's balancing bias, its load
summed over ranks there, so no adapter forward runs a collective).
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from comol import after_backward, aux_loss, takes_prompt_mask
from orchestration.data.tokenize import IGNORE_INDEX
from orchestration.training.fsdp import clip_grad_norm


@dataclass
class StepStats:
    loss: float  # lm_loss + aux_loss
    lm_loss: float
    aux_loss: float
    grad_norm: float
    tokens: int  # non-padding input tokens, all ranks
    lr: float  # the learning rate this step used (the scheduler has moved on after it)

    @property
    def finite(self) -> bool:
        return math.isfinite(self.loss) and math.isfinite(self.grad_norm)


def token_loss_sum(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of next-token cross-entropies over label positions, and the number of those positions.

    Logits are computed only where the next token is a label (``logits_to_keep`` as a boolean mask): with
    answer-only labels that skips the vocabulary projection, and its activations, for almost every token.
    """
    labels = batch["labels"]
    predicts = torch.zeros_like(labels, dtype=torch.bool)
    predicts[:, :-1] = labels[:, 1:] != IGNORE_INDEX  # position t predicts token t + 1
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    if "prompt_mask" in batch and takes_prompt_mask(model):  # SMEAR routes each example on its prompt
        inputs["prompt_mask"] = batch["prompt_mask"]
    if _keeps_logits(type(model)):
        logits = model(**inputs, logits_to_keep=predicts).logits.float()  # (label tokens, vocab)
    else:
        logits = model(**inputs).logits[predicts].float()
    targets = labels[:, 1:][predicts[:, :-1]]
    total = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets, reduction="sum")
    return total, predicts.sum()


@functools.cache
def _keeps_logits(model_class: type[nn.Module]) -> bool:
    """Whether the model's forward takes ``logits_to_keep`` (transformers' causal LMs do); asked once per class,
    not on every micro-batch."""
    return "logits_to_keep" in inspect.signature(model_class.forward).parameters


def _all_reduce(values: list[float], device: torch.device, op=dist.ReduceOp.SUM) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=op)
    return tensor.tolist()


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    micro_batches: list[dict[str, torch.Tensor]],
    params: list[nn.Parameter],
    *,
    world_size: int,
    max_grad_norm: float | None,
    device: torch.device,
) -> StepStats:
    """Forward/backward every micro-batch, clip, and step, unless the loss or gradient is not finite."""
    label_count = sum(int((mb["labels"][:, 1:] != IGNORE_INDEX).sum()) for mb in micro_batches)
    input_count = sum(int(mb["attention_mask"].sum()) for mb in micro_batches)
    global_labels, global_tokens = _all_reduce([label_count, input_count], device)
    global_labels = max(global_labels, 1.0)
    accumulation = len(micro_batches)
    lm_sum = torch.zeros((), dtype=torch.float64, device=device)
    aux_sum = torch.zeros((), dtype=torch.float64, device=device)
    for index, batch in enumerate(micro_batches):
        if hasattr(model, "set_requires_gradient_sync"):  # reduce-scatter once, on the last micro-batch
            model.set_requires_gradient_sync(index == accumulation - 1)
        total, _ = token_loss_sum(model, batch)
        aux = aux_loss(model)
        (total * (world_size / global_labels) + aux / accumulation).backward()
        after_backward(model)
        lm_sum += total.detach().double()
        aux_sum += aux.detach().double() / accumulation
    grad_norm = clip_grad_norm(params, max_grad_norm)
    lm_total, aux_total = _all_reduce([float(lm_sum), float(aux_sum)], device)
    lm_loss, aux_mean = lm_total / global_labels, aux_total / world_size
    lr = float(optimizer.param_groups[0]["lr"])
    stats = StepStats(lm_loss + aux_mean, lm_loss, aux_mean, grad_norm, int(global_tokens), lr)
    if stats.finite:
        optimizer.step()
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return stats


@torch.no_grad()
def validation_loss(model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], device: torch.device) -> float:
    """Mean token loss over every rank's validation batches (each rank passes the same number of batches)."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    for batch in batches:
        loss_sum, n = token_loss_sum(model, batch)
        total += loss_sum.double()
        count += n
    model.train(was_training)
    loss_total, tokens = _all_reduce([float(total), float(count)], device)
    return loss_total / max(tokens, 1.0)
