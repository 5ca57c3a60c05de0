"""Data: arithmetic generator, Alpaca JSON loading, tokenization with label masking, split and sharding."""

from __future__ import annotations

import re
from collections import Counter
from typing import get_args

import pytest
from datasets import Dataset
from tiny_models import byte_tokenizer, save_tiny_model

from comol.errors import ConfigError
from orchestration.data.arithmetic import arithmetic_records, arithmetic_test_records, max_held_out
from orchestration.data.batching import collate, epoch_order, eval_shard, split_train_val, step_micro_batches
from orchestration.data.prompts import (
    TEMPLATE_FILE,
    TEMPLATES,
    PromptTemplate,
    build_prompt,
    record_template,
    recorded_template,
)
from orchestration.data.records import load_records
from orchestration.data.tokenize import IGNORE_INDEX, encode, tokenize_records

# An independent solver: each kind's question pattern → (kind, numbers, answer).
PATTERNS = {
    "multiply_add": (
        r"buys (\d+) bags of (\d+) (\w+) and (\d+) loose \3\. How many \3 in all\?$",
        lambda a, b, c: a * b + c,
    ),
    "multiply_subtract": (
        r"buys (\d+) bags of (\d+) (\w+) and gives (\d+) to \w+\. How many \3 are left\?$",
        lambda a, b, c: a * b - c,
    ),
    "add_multiply": (
        r"has (\d+) bags and buys (\d+) more\. Each bag holds (\d+) (\w+)\. How many \4 in all\?$",
        lambda a, b, c: (a + b) * c,
    ),
    "add_subtract": (
        r"^A box has (\d+) (\w+)\. \w+ adds (\d+) and takes out (\d+)\. How many \2 are left\?$",
        lambda a, b, c: a + b - c,
    ),
}
STEP = re.compile(r"^(\d+)([-+*])(\d+)=(\d+)$")


def parse(question: str) -> tuple[str, tuple[int, ...], int]:
    """(kind, numbers, answer) of a generated question."""
    for kind, (pattern, rule) in PATTERNS.items():
        found = re.search(pattern, question)
        if found:
            numbers = tuple(int(g) for g in found.groups() if g.isdigit())
            return kind, numbers, rule(*numbers)
    raise AssertionError(f"unrecognised problem: {question}")


def test_arithmetic_problems_are_deterministic_correct_and_show_their_working():
    records = arithmetic_records(400, seed=3)
    assert records == arithmetic_records(400, seed=3)
    assert records != arithmetic_records(400, seed=4)
    assert len({r["instruction"] for r in records}) == 400
    kinds = Counter()
    for record in records:
        kind, numbers, answer = parse(record["instruction"])
        kinds[kind] += 1
        assert record["answer"] == str(answer) and record["input"] == "" and answer > 0
        assert answer not in numbers  # copying a number from the question never scores
        steps = [STEP.match(step) for step in record["output"].removeprefix(" ").split(", ")]
        assert record["output"].startswith(" ") and len(steps) == 2 and all(steps), record["output"]
        first, second = (tuple(int(g) if g.isdigit() else g for g in step.groups()) for step in steps)
        for a, op, b, result in (first, second):
            assert result == {"+": a + b, "-": a - b, "*": a * b}[op]
            assert op != "-" or b <= a % 10  # subtraction never borrows
            assert op != "*" or max(a, b) <= 10  # products stay in the times table
        assert second[0] == first[3] and second[3] == answer  # the second step continues from the first
    assert set(kinds) == set(PATTERNS) and min(kinds.values()) > 400 / len(PATTERNS) * 0.75  # kinds are uniform


@pytest.mark.parametrize(("train_size", "seed"), [(800, 0), (500, 1), (64, 7)])
def test_held_out_problems_are_never_trained_near_duplicates_included(train_size, seed):
    """No held-out problem shares its kind and numbers with a training problem (whatever names and items say),
    held-out problems are all different problems, and every kind is equally represented."""
    trained = {parse(r["instruction"])[:2] for r in arithmetic_records(train_size, seed)}
    held_out = arithmetic_test_records(max_held_out(), seed, train_size=train_size)
    assert held_out == arithmetic_test_records(max_held_out(), seed, train_size=train_size)
    signatures = [parse(r["instruction"])[:2] for r in held_out]
    assert not trained & set(signatures)
    assert len(set(signatures)) == len(held_out) >= 200
    assert set(Counter(kind for kind, _ in signatures).values()) == {len(held_out) // len(PATTERNS)}
    for record in held_out:
        assert record["answer"] == str(parse(record["instruction"])[2])
    with pytest.raises(ValueError, match="between 1 and"):
        arithmetic_test_records(max_held_out() + 1, seed, train_size=train_size)


def test_alpaca_json_files_load_with_all_four_columns(shared_data):
    math = load_records(str(shared_data / "math" / "math_data.train.json"), size=50)
    assert len(math) == 50 and set(math.column_names) == {"instruction", "input", "output", "answer"}
    assert math[0]["answer"] != ""
    code = load_records(str(shared_data / "code" / "code_alpaca_2k.json"))
    assert len(code) == 2017 and set(code.column_names) == {"instruction", "input", "output", "answer"}
    assert {r["answer"] for r in code.select(range(20))} == {""}  # CodeAlpaca has no answers
    assert any(r["input"] for r in code)  # some records carry an input block


def test_encode_masks_the_prompt_only_in_response_mode():
    prompt, response, eos = [5, 6, 7], [8, 9], 1
    assert encode(prompt, response, eos, 10, "all") == {
        "input_ids": [5, 6, 7, 8, 9, 1],
        "labels": [5, 6, 7, 8, 9, 1],
        "prompt_length": 3,
    }
    assert encode(prompt, response, eos, 10, "response")["labels"] == [IGNORE_INDEX] * 3 + [8, 9, 1]
    # cut to the cutoff first, EOS after: a long example still ends with EOS
    assert encode(prompt, response, eos, 4, "response") == {
        "input_ids": [5, 6, 7, 8, 1],
        "labels": [-100, -100, -100, 8, 1],
        "prompt_length": 3,
    }
    # the response cut away entirely: nothing to learn in response mode (the caller drops it)
    assert set(encode(prompt, response, eos, 3, "response")["labels"]) == {IGNORE_INDEX}
    assert encode(prompt, response, eos, 2, "all")["input_ids"] == [5, 6, 1]


def test_the_prompt_ends_at_the_response_marker_without_a_newline():
    """The authors' template (data.py): '### Response:' and the output follows directly."""
    prompt = build_prompt("Add 2 and 3.")
    assert prompt.endswith("\n\n### Response:")
    assert build_prompt("Sort these.", "3, 1, 2").endswith("### Input:\n3, 1, 2\n\n### Response:")


def test_training_text_is_prompt_then_output_then_eos(shared_data):
    tokenizer = byte_tokenizer()
    records = load_records(str(shared_data / "math" / "math_data.train.json"), size=3)
    tokenized = tokenize_records(records, tokenizer, cutoff_len=4000, labels="all")
    for record, row in zip(records, tokenized, strict=True):
        assert row["input_ids"][-1] == tokenizer.eos_token_id
        assert row["input_ids"][0] == tokenizer.bos_token_id  # the tokenizer's own <s>, as Llama's adds it
        text = tokenizer.decode(row["input_ids"][1:-1])
        assert text == build_prompt(record["instruction"], record["input"]) + record["output"]
        assert "### Response:\n\n" not in text  # the output brings its own newline; the template adds none


def test_long_examples_keep_their_eos(shared_data):
    """Cut to the cutoff, then EOS: an example longer than the cutoff still teaches the model to stop."""
    tokenizer = byte_tokenizer()
    records = load_records(str(shared_data / "math" / "math_data.train.json"), size=4)
    cutoff = max(len(tokenizer(build_prompt(r["instruction"], r["input"]))["input_ids"]) for r in records) + 10
    for labels in ("all", "response"):
        cut = tokenize_records(records, tokenizer, cutoff_len=cutoff, labels=labels)
        assert len(cut) == 4
        for row in cut:
            assert len(row["input_ids"]) == cutoff + 1  # every chain of thought here is longer than 10 bytes
            assert row["input_ids"][-1] == row["labels"][-1] == tokenizer.eos_token_id


def test_tokenization_uses_the_spec_prompt_and_ends_with_eos():
    tokenizer = byte_tokenizer()
    records = Dataset.from_list(arithmetic_records(8, seed=1))
    full = tokenize_records(records, tokenizer, cutoff_len=1000, labels="all")
    masked = tokenize_records(records, tokenizer, cutoff_len=1000, labels="response")
    for record, a, m in zip(records, full, masked, strict=True):
        prompt_ids = tokenizer(build_prompt(record["instruction"]))["input_ids"]
        answer_ids = tokenizer(record["output"], add_special_tokens=False)["input_ids"]
        assert a["input_ids"] == prompt_ids + answer_ids + [tokenizer.eos_token_id]
        assert a["labels"] == a["input_ids"] and m["input_ids"] == a["input_ids"]
        assert m["labels"] == [IGNORE_INDEX] * len(prompt_ids) + answer_ids + [tokenizer.eos_token_id]
        assert a["prompt_length"] == m["prompt_length"] == len(prompt_ids)
        assert a["answer"] == record["answer"]
    # Cut inside the prompt: no response token is left in response mode, so those examples are dropped.
    assert len(tokenize_records(records, tokenizer, cutoff_len=20, labels="response")) == 0
    cut = tokenize_records(records, tokenizer, cutoff_len=20, labels="all")
    eos = tokenizer.eos_token_id
    assert len(cut) == 8 and all(len(r["input_ids"]) == 21 and r["input_ids"][-1] == eos for r in cut)


@pytest.mark.parametrize("template", ["alpaca", "short"])
def test_training_evaluation_and_generate_feed_the_same_prompt_tokens(tmp_path, template):
    """The prompt tokens a model trains on are the tokens evaluation and ``comol generate`` give it, in either
    template."""
    from transformers import AutoModelForCausalLM

    from orchestration.evaluation.generation import record_prompts
    from orchestration.registry.generation import complete

    tokenizer = byte_tokenizer()
    records = Dataset.from_list(arithmetic_records(2, seed=4))
    row = tokenize_records(records, tokenizer, cutoff_len=1000, labels="all", template=template)[0]
    trained_prompt = row["input_ids"][: row["prompt_length"]]
    assert tokenizer(record_prompts([records[0]], template)[0])["input_ids"] == trained_prompt
    model = AutoModelForCausalLM.from_pretrained(save_tiny_model(tmp_path))
    seen = []
    model.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs["input_ids"]), with_kwargs=True)
    complete(model, tokenizer, records[0]["instruction"], max_new_tokens=1, template=template)
    assert seen[0].tolist() == [trained_prompt]


def test_prompt_templates_and_their_record_in_an_adapter_folder(tmp_path):
    assert set(TEMPLATES) == set(get_args(PromptTemplate))  # the config accepts exactly the templates there are
    assert build_prompt("Tom has 3 apples.", template="short") == "Question: Tom has 3 apples.\nAnswer:"
    assert build_prompt("Add them.", "3 and 4", template="short") == "Question: Add them.\n3 and 4\nAnswer:"
    assert build_prompt("Add them.").startswith("Below is an instruction")  # Alpaca unless told
    with pytest.raises(ConfigError) as caught:
        build_prompt("x", template="chat")
    assert caught.value.field == "prompt_template" and caught.value.allowed == ["alpaca", "short"]

    assert recorded_template(tmp_path) == "alpaca"  # an adapter folder without a record was trained with Alpaca
    record_template(tmp_path, "short")
    assert recorded_template(tmp_path) == "short"
    (tmp_path / TEMPLATE_FILE).write_text("short")
    with pytest.raises(ConfigError, match=TEMPLATE_FILE):
        recorded_template(tmp_path)
    with pytest.raises(ConfigError):
        record_template(tmp_path, "chat")


def test_tokenization_follows_the_prompt_template():
    tokenizer = byte_tokenizer()
    records = Dataset.from_list(arithmetic_records(4, seed=1))
    short = tokenize_records(records, tokenizer, cutoff_len=1000, labels="response", template="short")
    for record, example in zip(records, short, strict=True):
        prompt_ids = tokenizer(build_prompt(record["instruction"], template="short"))["input_ids"]
        assert example["input_ids"][: len(prompt_ids)] == prompt_ids
        assert example["labels"][: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
        assert tokenizer.decode(example["input_ids"], skip_special_tokens=True).startswith(
            f"Question: {record['instruction']}\nAnswer: "
        )


def test_validation_split_is_deterministic_by_seed_and_disjoint():
    data = Dataset.from_list([{"i": i} for i in range(100)])
    train, val = (list(part["i"]) for part in split_train_val(data, 10, seed=7))
    train2, val2 = (list(part["i"]) for part in split_train_val(data, 10, seed=7))
    assert val == val2 and train == train2
    assert len(val) == 10 and sorted(train + val) == list(range(100))
    assert list(split_train_val(data, 10, seed=8)[1]["i"]) != val
    assert len(split_train_val(data, 0.25, seed=7)[1]) == 25
    assert split_train_val(data, 0, seed=7) == (data, None)
    with pytest.raises(ValueError):
        split_train_val(data, 100, seed=7)


def test_every_worker_count_sees_the_same_global_batch():
    n, batch = 50, 8
    for step in (1, 2, 6, 7):  # 6 steps per epoch: 7 is the first step of epoch 2
        one = step_micro_batches(n, step, batch_size=batch, accumulation=1, rank=0, world_size=1, seed=0)[0]
        two = [
            index
            for rank in range(2)
            for micro in step_micro_batches(n, step, batch_size=batch, accumulation=2, rank=rank, world_size=2, seed=0)
            for index in micro
        ]
        assert sorted(one) == sorted(two) and len(set(one)) == batch
    epoch = [
        i
        for s in range(1, 7)
        for i in step_micro_batches(n, s, batch_size=8, accumulation=1, rank=0, world_size=1, seed=0)[0]
    ]
    assert len(set(epoch)) == 48  # one epoch: distinct examples, the last incomplete batch dropped
    assert epoch_order(n, 0, 0) != epoch_order(n, 0, 1) and epoch_order(n, 0, 0) == epoch_order(n, 0, 0)


def test_eval_shards_are_even_and_cover_everything():
    shards = [eval_shard(7, rank, 3, micro_batch=2) for rank in range(3)]
    assert all(len(s) == len(shards[0]) for s in shards)
    seen = sorted(i for s in shards for micro in s for i in micro if i >= 0)
    assert seen == list(range(7))


def test_collate_pads_right_and_ignores_padding():
    data = Dataset.from_list(
        [{"input_ids": [3, 4, 5], "labels": [-100, 4, 5]}, {"input_ids": [6, 7], "labels": [6, 7]}]
    )
    batch = collate(data, [0, 1, -1], pad_token_id=0)
    assert batch["input_ids"].tolist() == [[3, 4, 5], [6, 7, 0], [3, 4, 5]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0], [1, 1, 1]]
    assert batch["labels"].tolist() == [[-100, 4, 5], [6, 7, -100], [-100, -100, -100]]
    assert "prompt_mask" not in batch  # rows without a prompt length: nothing to route on


def test_collate_marks_each_prompt():
    data = Dataset.from_list(
        [
            {"input_ids": [3, 4, 5], "labels": [3, 4, 5], "prompt_length": 2},
            {"input_ids": [6, 7], "labels": [6, 7], "prompt_length": 1},
        ]
    )
    assert collate(data, [0, 1], pad_token_id=0)["prompt_mask"].tolist() == [[1, 1, 0], [1, 0, 0]]


def test_the_arithmetic_data_path_prints_nothing(monkeypatch):
    """Ray Train workers redirect ``print`` to their log: fingerprinting a table by hashing it would run dill's
    disassembler there and fill the sweep's terminal with bytecode. The path must not call print at all."""
    printed: list[tuple] = []
    monkeypatch.setattr("builtins.print", lambda *args, **kwargs: printed.append(args))
    records = load_records("arithmetic", size=16, seed=3)
    tokenized = tokenize_records(records, byte_tokenizer(), cutoff_len=1000, labels="response")
    train, val = split_train_val(tokenized, 4, seed=3)
    assert printed == []
    assert (len(train), len(val)) == (12, 4)
    again = load_records("arithmetic", size=16, seed=3)
    assert again._fingerprint == records._fingerprint and list(again) == list(records)
    assert load_records("arithmetic", size=16, seed=4)._fingerprint != records._fingerprint
