"""Batched, left-padded generation with any Hugging Face causal LM (adapters injected or not).

Left padding keeps every prompt's last token at the end of the batch row, so the first generated token of a
padded prompt sees the same context (the attention mask hides the pads, positions come from the mask) as
the prompt alone. Prompts are batched by length to waste little on padding; results come back in order.
Always with the KV cache: SMEAR routes on the prompt its prefill call sees and reuses that route at every
decode step, as it was trained.

Sampling draws from a ``torch.Generator`` of its own (seeded by ``GenerationConfig.seed``): transformers' sampler
draws from the process-wide RNG, which a seeded evaluation would otherwise have to reseed under everyone else's
feet. The distribution is transformers' own (its temperature, top-k and top-p warpers, the model's top-k and
min-p defaults); only the draw is ours, made in a logits processor after which decoding is greedy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from orchestration.data.prompts import DEFAULT_TEMPLATE, build_prompt


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings. Greedy unless ``do_sample``; ``top_k`` None leaves the model's own default."""

    max_new_tokens: int = 300
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    num_samples: int = 1
    batch_size: int = 8
    seed: int | None = None

    def __post_init__(self) -> None:
        from comol.errors import ConfigError

        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens", f"must be at least 1, got {self.max_new_tokens}")
        if self.num_samples < 1 or self.batch_size < 1:
            raise ConfigError("num_samples", "num_samples and batch_size must be at least 1")
        if self.num_samples > 1 and not self.do_sample:
            raise ConfigError("num_samples", "several samples per prompt need do_sample=True (greedy repeats itself)")
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ConfigError("temperature", "sampling needs temperature > 0 and 0 < top_p <= 1")

    @classmethod
    def math(cls, **overrides: object) -> GenerationConfig:
        """The paper's math protocol: greedy, up to 300 new tokens."""
        return cls(**{**asdict(cls()), "max_new_tokens": 300, **overrides})

    @classmethod
    def humaneval(cls, **overrides: object) -> GenerationConfig:
        """The paper's code protocol: n=10 samples, temperature 0.7, top-p 0.95, up to 400 new tokens."""
        base = {"max_new_tokens": 400, "do_sample": True, "temperature": 0.7, "top_p": 0.95, "num_samples": 10}
        return cls(**{**asdict(cls()), **base, **overrides})


def record_prompts(records: Sequence[dict], template: str = DEFAULT_TEMPLATE) -> list[str]:
    """The prompt of each record (``instruction`` and optional ``input``) in ``template``, as training built it."""
    return [build_prompt(r["instruction"], r.get("input", "") or "", template) for r in records]


class _Draw(LogitsProcessor):
    """Samples the next token from the warped scores with a generator of its own (on the scores' device, seeded
    with ``seed``, or freshly when None); leaves only that token possible, so the greedy step picks it."""

    def __init__(self, seed: int | None):
        self.seed = seed
        self.generator: torch.Generator | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.generator is None:
            self.generator = torch.Generator(device=scores.device)
            if self.seed is None:
                self.generator.seed()
            else:
                self.generator.manual_seed(self.seed)
        drawn = torch.multinomial(torch.softmax(scores.float(), dim=-1), 1, generator=self.generator)
        return torch.full_like(scores, float("-inf")).scatter_(1, drawn, 0.0)


def _sampler(model: torch.nn.Module, config: GenerationConfig) -> LogitsProcessorList:
    """The sampling distribution transformers would use (our settings over the model's top-k / min-p defaults),
    drawn from a generator of our own."""
    defaults = getattr(model, "generation_config", None)
    top_k = config.top_k if config.top_k is not None else getattr(defaults, "top_k", None)
    min_p = getattr(defaults, "min_p", None)
    warpers: list[LogitsProcessor] = []
    if config.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(config.temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k=top_k))
    if config.top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=config.top_p))
    if min_p is not None:
        warpers.append(MinPLogitsWarper(min_p=min_p))
    return LogitsProcessorList([*warpers, _Draw(config.seed)])


def _eos_ids(model: torch.nn.Module, tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def generate(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[str],
    config: GenerationConfig | None = None,
    *,
    progress: bool = True,
    desc: str = "generate",
) -> list[list[str]]:
    """``config.num_samples`` completions per prompt (only the new text, cut at the first EOS), in prompt order."""
    from tqdm.auto import tqdm

    config = config or GenerationConfig()
    eos = _eos_ids(model, tokenizer)
    if not eos:
        raise ValueError("neither the tokenizer nor the model defines an EOS token; generation could not stop")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    device = next(model.parameters()).device
    # Decoding is greedy; sampling is a drawing logits processor (and each prompt repeated num_samples times).
    sampling = {"logits_processor": _sampler(model, config)} if config.do_sample else {}
    repeats = config.num_samples

    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[list[str]] = [[] for _ in prompts]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), tqdm(total=len(prompts), desc=desc, disable=not progress) as bar:
            for start in range(0, len(order), config.batch_size):
                batch = order[start : start + config.batch_size]
                input_ids, attention_mask = _left_pad([encoded[i] for i in batch], pad_id)
                input_ids, attention_mask = (
                    input_ids.repeat_interleave(repeats, 0),
                    attention_mask.repeat_interleave(repeats, 0),
                )
                output = model.generate(
                    input_ids=input_ids.to(device),
                    attention_mask=attention_mask.to(device),
                    max_new_tokens=config.max_new_tokens,
                    do_sample=False,
                    eos_token_id=eos,
                    pad_token_id=pad_id,
                    use_cache=True,
                    **sampling,
                )
                new_tokens = output[:, input_ids.shape[1] :].tolist()
                for row, tokens in enumerate(new_tokens):
                    cut = next((j for j, t in enumerate(tokens) if t in eos), len(tokens))
                    text = tokenizer.decode(tokens[:cut], skip_special_tokens=True)
                    results[batch[row // repeats]].append(text)
                bar.update(len(batch))
    finally:
        model.train(was_training)
    return results


def _left_pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, width - len(seq) :] = 1
    return ids, mask
