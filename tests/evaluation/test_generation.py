"""Batched generation with a tiny random model: left padding changes nothing, n samples, EOS, sharded benchmarks."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_models import byte_tokenizer, tiny_model

from comol.errors import ConfigError
from orchestration.evaluation.benchmarks import (
    evaluate_arithmetic,
    evaluate_humaneval,
    evaluate_math,
    shard,
    training_hook,
)
from orchestration.evaluation.generation import GenerationConfig, generate
from orchestration.evaluation.math_scoring import math_metrics

PROMPTS = ["Hello there, how are", "x", "A much longer prompt, so that the others get padded on the left"]


@pytest.fixture(scope="module")
def tokenizer():
    return byte_tokenizer()


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return tiny_model(seed=3)


def test_left_padded_batch_equals_each_prompt_alone(model, tokenizer):
    config = GenerationConfig(max_new_tokens=12, batch_size=3)
    batched = generate(model, tokenizer, PROMPTS, config, progress=False)
    alone = [generate(model, tokenizer, [p], config, progress=False)[0] for p in PROMPTS]
    assert batched == alone
    assert all(len(samples) == 1 for samples in batched)
    assert sum(len(samples[0]) for samples in batched) > 10  # real text, not all stopped at once


def test_generation_with_an_injected_comol_adapter(tokenizer):
    from comol import inject_adapter, make_config

    config = GenerationConfig(max_new_tokens=10, batch_size=3)
    base = generate(tiny_model(seed=3), tokenizer, PROMPTS, config, progress=False)
    adapted = inject_adapter(tiny_model(seed=3), make_config("comol", r=4, num_experts=3)).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # B starts at zero (identity adapter): make it matter
        for parameter in adapted.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    batched = generate(adapted, tokenizer, PROMPTS, config, progress=False)
    assert batched == [generate(adapted, tokenizer, [p], config, progress=False)[0] for p in PROMPTS]
    assert batched != base


def test_n_samples_per_prompt_and_seed(model, tokenizer):
    config = GenerationConfig(max_new_tokens=6, do_sample=True, temperature=0.7, top_p=0.95, num_samples=4, seed=7)
    first = generate(model, tokenizer, PROMPTS, config, progress=False)
    assert [len(samples) for samples in first] == [4, 4, 4]
    assert len(set(first[2])) > 1  # samples differ from each other
    assert generate(model, tokenizer, PROMPTS, config, progress=False) == first  # seeded


def test_seeded_sampling_leaves_the_process_wide_rng_alone(model, tokenizer):
    """A seeded evaluation draws from its own generator: code around it keeps its own random stream."""
    config = GenerationConfig(max_new_tokens=4, do_sample=True, num_samples=2, seed=3)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = generate(model, tokenizer, PROMPTS[:2], config, progress=False)
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(999)  # whatever the global state, the seeded samples are the same
    assert generate(model, tokenizer, PROMPTS[:2], config, progress=False) == first


def test_stops_at_eos(model, tokenizer):
    config = GenerationConfig(max_new_tokens=12)
    (free,) = generate(model, tokenizer, PROMPTS[:1], config, progress=False)[0]
    ids = tokenizer(PROMPTS[0] + free, add_special_tokens=False)["input_ids"][len(PROMPTS[0]) :]
    stop = ids[3]  # make the 4th generated token the end-of-sequence token
    first = ids.index(stop)
    original = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = stop
    try:
        (stopped,) = generate(model, tokenizer, PROMPTS[:1], config, progress=False)[0]
    finally:
        model.generation_config.eos_token_id = original
    assert stopped == free[:first]


def test_config_validation():
    with pytest.raises(ConfigError, match="num_samples"):
        GenerationConfig(num_samples=3)  # greedy samples would all be equal
    with pytest.raises(ConfigError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
    assert GenerationConfig.humaneval().num_samples == 10 and GenerationConfig.math().max_new_tokens == 300
    assert list(shard(7, 1, 3)) == [1, 4]
    with pytest.raises(ConfigError):
        shard(7, 3, 3)


def test_evaluate_math_sharded_equals_whole(model, tokenizer, shared_data):
    kwargs = dict(data_dir=shared_data / "math", limit=3, generation=GenerationConfig(max_new_tokens=8, batch_size=4))
    whole = evaluate_math(model, tokenizer, ["addsub", "aqua"], progress=False, **kwargs)
    parts = [
        evaluate_math(model, tokenizer, ["addsub", "aqua"], rank=r, world_size=2, progress=False, **kwargs).records
        for r in range(2)
    ]
    merged = sorted(parts[0] + parts[1], key=lambda r: (r["dataset"], r["index"]))
    assert merged == sorted(whole.records, key=lambda r: (r["dataset"], r["index"]))
    assert math_metrics(merged) == whole.metrics
    assert set(whole.metrics) == {"eval/addsub/accuracy", "eval/aqua/accuracy", "eval/average"}
    record = whole.records[0]
    assert {"dataset", "index", "answer", "output", "prediction", "correct"} <= set(record)
    json.dumps(whole.records)  # JSONL-ready


def test_evaluate_humaneval_runs_generations_in_the_sandbox(model, tokenizer):
    generation = GenerationConfig(max_new_tokens=6, do_sample=True, temperature=0.7, top_p=0.95, num_samples=2, seed=0)
    result = evaluate_humaneval(model, tokenizer, limit=2, generation=generation, ks=(1, 2), workers=2, progress=False)
    assert len(result.records) == 4
    assert all(r["status"] in {"passed", "failed", "timeout"} for r in result.records)
    assert result.metrics == {"eval/humaneval/pass@1": 0.0, "eval/humaneval/pass@2": 0.0}  # random weights


def test_training_hook_contract(model, tokenizer, shared_data, tmp_path):
    options = {
        "math": ["singleeq"],
        "limit": 2,
        "data_dir": str(shared_data / "math"),
        "max_new_tokens": 4,
        "generations_path": str(tmp_path / "gen.jsonl"),
    }
    metrics = training_hook(model, tokenizer, options, rank=0, world_size=1, device=torch.device("cpu"))
    assert set(metrics) == {"singleeq/accuracy", "average"}  # the hook runner adds "eval/"
    lines = (tmp_path / "gen.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["dataset"] == "singleeq"


def test_arithmetic_evaluation_is_held_out_and_shards_like_the_whole(model, tokenizer, tmp_path):
    """The quickstart's metric: generated problems the training set never contains, scored numerically."""
    from orchestration.data.arithmetic import arithmetic_records

    generation = GenerationConfig(max_new_tokens=4, batch_size=4)
    kwargs = dict(size=6, train_size=50, data_seed=1, generation=generation, progress=False)
    whole = evaluate_arithmetic(model, tokenizer, **kwargs)
    parts = [evaluate_arithmetic(model, tokenizer, rank=r, world_size=2, **kwargs).records for r in range(2)]
    assert sorted(parts[0] + parts[1], key=lambda r: r["index"]) == whole.records
    trained = {r["instruction"] for r in arithmetic_records(50, 1)}
    assert len(whole.records) == 6 and not trained & {r["instruction"] for r in whole.records}
    assert set(whole.metrics) == {"eval/arithmetic/accuracy", "eval/average"}

    options = {"math": [], "arithmetic": {"size": 6, "train_size": 50, "data_seed": 1}, "max_new_tokens": 4}
    options["generations_path"] = str(tmp_path / "gen.jsonl")
    metrics = training_hook(model, tokenizer, options, rank=0, world_size=1, device=torch.device("cpu"))
    assert metrics == {k.removeprefix("eval/"): v for k, v in whole.metrics.items()}
    assert [json.loads(line)["output"] for line in (tmp_path / "gen.jsonl").read_text().splitlines()] == [
        r["output"] for r in whole.records
    ]
    with pytest.raises(ConfigError, match=r"evaluation\.options\.arithmetic"):
        training_hook(model, tokenizer, {"math": [], "arithmetic": {"size": 6}}, rank=0, world_size=1, device=None)


@pytest.mark.parametrize("config_cache", [True, False], ids=["cache-on", "cache-off-in-config"])
def test_smear_generation_continues_the_route_it_was_trained_with(tokenizer, config_cache):
    """Batched generation equals greedy decoding by full teacher-forced forwards with the prompt mask (how
    training routes), also when the model's config turns the KV cache off, as training sets it."""
    from comol import inject_adapter, make_config

    model = inject_adapter(tiny_model(seed=3), make_config("smear", r=4, num_experts=3))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # B starts at zero: give the experts and the router weight
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    model.config.use_cache = model.generation_config.use_cache = config_cache
    new_tokens = 10
    completions = generate(model, tokenizer, PROMPTS, GenerationConfig(new_tokens, batch_size=3), progress=False)
    eos = {tokenizer.eos_token_id, model.generation_config.eos_token_id}
    for prompt, [completion] in zip(PROMPTS, completions, strict=True):
        prompt_ids = tokenizer(prompt)["input_ids"]
        ids = list(prompt_ids)
        with torch.no_grad():
            for _ in range(new_tokens):
                prompt_mask = torch.tensor([[1] * len(prompt_ids) + [0] * (len(ids) - len(prompt_ids))])
                ids.append(int(model(torch.tensor([ids]), prompt_mask=prompt_mask).logits[0, -1].argmax()))
                if ids[-1] in eos:
                    ids.pop()
                    break
        assert completion == tokenizer.decode(ids[len(prompt_ids) :], skip_special_tokens=True)
    assert any(len(c[0]) > 3 for c in completions)
