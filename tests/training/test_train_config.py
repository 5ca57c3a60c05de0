"""TrainConfig validation: every error names the field (dotted) and, where finite, the allowed values."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from pydantic import ValidationError

from comol import CoMoLConfig, ConfigError, LoRAConfig
from orchestration.evaluation.options import BENCHMARK_HOOK
from orchestration.training.config import TrainConfig, load_config

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs" / "train_quickstart.yaml"


def minimal(**sections) -> dict:
    return {"data": {"source": "arithmetic", "size": 64}, **sections}


def error_of(data: dict) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        TrainConfig.from_dict(data)
    return caught.value


def test_quickstart_config_is_valid_and_builds_a_comol_adapter():
    config = load_config(QUICKSTART)
    adapter = config.adapter_config()
    assert isinstance(adapter, CoMoLConfig)
    assert adapter.base_model_name_or_path == "smollm2-135m"
    assert config.training.batch_size % (config.resources.num_workers * config.training.gradient_accumulation) == 0
    assert config.data.source == "arithmetic" and config.resources.gpus_per_worker == 0
    assert Path(config.output_dir).is_absolute()


def test_defaults_follow_the_authors():
    config = TrainConfig.from_dict(minimal())
    t = config.training
    assert (t.optimizer, t.lr, t.weight_decay, t.schedule, t.warmup_steps) == (
        "adamw",
        1e-4,
        0.0,
        "constant_with_warmup",
        200,
    )
    assert (t.batch_size, t.epochs, config.data.cutoff_len, config.data.labels) == (16, 1.0, 300, "all")
    assert config.bf16 is False  # 'auto' on CPUs
    gpu = TrainConfig.from_dict(minimal(resources={"gpus_per_worker": 1}))
    assert gpu.bf16 is True and gpu.use_gpu


def test_unknown_keys_name_the_field_and_the_allowed_keys():
    err = error_of(minimal(bogus=1))
    assert err.field == "bogus" and "training" in err.allowed and "adapter" in err.allowed
    err = error_of(minimal(training={"lrr": 1e-3}))
    assert err.field == "training.lrr" and "lr" in err.allowed


def test_enumerations_list_the_allowed_values():
    err = error_of({"data": {"source": "arithmetic", "size": 8, "labels": "prompt"}})
    assert err.field == "data.labels" and err.allowed == ["all", "response"]
    err = error_of(minimal(training={"precision": "fp16"}))
    assert err.field == "training.precision" and set(err.allowed) == {"auto", "fp32", "bf16"}
    err = error_of(minimal(training={"schedule": "step"}))
    assert err.field == "training.schedule" and "constant_with_warmup" in err.allowed


def test_prompt_template_is_one_of_the_templates_and_evaluation_cannot_override_it(tmp_path, capsys):
    from orchestration.cli import main

    assert TrainConfig.from_dict(minimal()).data.prompt_template == "alpaca"  # the authors' prompt by default
    short = TrainConfig.from_dict({"data": {"source": "arithmetic", "size": 8, "prompt_template": "short"}})
    assert short.data.prompt_template == "short"
    err = error_of({"data": {"source": "arithmetic", "size": 8, "prompt_template": "chat"}})
    assert err.field == "data.prompt_template" and err.allowed == ["alpaca", "short"]
    for hook in ("pkg.mod:evaluate", "orchestration.evaluation.benchmarks:training_hook"):  # any hook, the shipped one
        evaluation = {"hook": hook, "options": {"prompt_template": "short"}}
        err = error_of(
            minimal(data={"source": "arithmetic", "size": 8, "prompt_template": "short"}, evaluation=evaluation)
        )
        assert err.field == "evaluation.options.prompt_template" and "data.prompt_template" in str(err)

    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {source: arithmetic, size: 8, prompt_template: Alpaca}\n")
    assert main(["train", str(bad)]) == 2
    printed = capsys.readouterr().err
    assert "data.prompt_template" in printed and "alpaca, short" in printed and "Traceback" not in printed


def test_method_and_adapter_fields_are_checked_by_the_library():
    err = error_of(minimal(method="nope"))
    assert err.field == "method" and {"comol", "lora"} <= set(err.allowed)
    err = error_of(minimal(adapter={"num_expert": 4}))
    assert err.field == "adapter.num_expert" and "num_experts" in err.allowed
    assert error_of(minimal(adapter={"r": 0})).field == "adapter.r"
    assert error_of(minimal(adapter={"num_experts": 0})).field == "adapter.num_experts"
    err = error_of(minimal(method="lora", adapter={"num_experts": 4}))  # LoRA has no experts
    assert err.field == "adapter.num_experts"
    lora = TrainConfig.from_dict(minimal(method="lora", adapter={"r": 8, "target_modules": ["q_proj"]}))
    assert isinstance(lora.adapter_config(), LoRAConfig) and lora.adapter_config().r == 8


def test_cross_field_rules():
    err = error_of(minimal(training={"batch_size": 6}, resources={"num_workers": 4}))
    assert err.field == "training.batch_size" and "divisible" in str(err)
    assert error_of({"data": {"source": "arithmetic"}}).field == "data.size"
    err = error_of(minimal(fault={"rank": 2, "at_step": 1}))  # faults are injected by tests, never configured
    assert err.field == "fault" and "fault" not in err.allowed
    err = error_of(minimal(training={"batch_size": 12}, resources={"num_workers": 6, "shard_size": 4}))
    assert err.field == "resources.shard_size" and err.allowed == [1, 2, 3, 6]
    assert error_of(minimal(resources={"shard_size": 0})).field == "resources.shard_size"


def test_paths_must_exist_and_become_absolute(tmp_path):
    assert error_of(minimal(model=str(tmp_path / "missing"))).field == "model"
    assert error_of({"data": {"source": str(tmp_path / "none.json")}}).field == "data.source"
    assert error_of(minimal(model="not a model")).field == "model"
    hub = TrainConfig.from_dict(minimal(model="HuggingFaceTB/SmolLM2-135M-Instruct"))
    assert hub.model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    data = tmp_path / "d.json"
    data.write_text("[]")
    config = TrainConfig.from_dict({"data": {"source": str(data)}, "output_dir": "rel/out"})
    assert config.data.source == str(data) and Path(config.output_dir).is_absolute()


def test_evaluation_hook_must_name_a_function():
    assert error_of(minimal(evaluation={"hook": "no_colon"})).field == "evaluation.hook"
    config = TrainConfig.from_dict(minimal(evaluation={"hook": "pkg.mod:evaluate", "options": {"n": 3}}))
    assert config.evaluation.options == {"n": 3}  # a custom hook's options are its own business


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"bogus": 1}, "evaluation.options.bogus"),
        ({"math": ["gsm8k", "mmlu"]}, "evaluation.options.math[1]"),
        ({"arithmetic": {"size": 0}}, "evaluation.options.arithmetic.size"),
        ({"arithmetic": {"sizes": 4}}, "evaluation.options.arithmetic.sizes"),
        ({"max_new_tokens": 0}, "evaluation.options.max_new_tokens"),
        ({"postprocess": "fancy"}, "evaluation.options.postprocess"),
        ({"humaneval": "maybe"}, "evaluation.options.humaneval"),
    ],
)
def test_the_benchmark_hooks_options_are_validated_before_training(options, field):
    """The shipped hook's options are typed: a bad one names its field at the edge, not after the training."""
    err = error_of(minimal(evaluation={"hook": BENCHMARK_HOOK, "options": options}))
    assert err.field == field, str(err)


def test_a_validated_config_is_frozen_and_spells_out_the_adapter():
    config = TrainConfig.from_dict(minimal(adapter={"num_experts": 4}))
    assert config.adapter == CoMoLConfig(num_experts=4, base_model_name_or_path="smollm2-135m")  # built once, here
    assert config.model_dump()["adapter"] == {
        "r": 16,
        "alpha": 16.0,
        "dropout": 0.1,  # the authors' default
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"],
        "num_experts": 4,
        "core_routing": True,
    }
    assert TrainConfig.from_dict(minimal(adapter=config.model_dump()["adapter"])) == config  # defaults or not: one
    with pytest.raises(ValidationError):
        config.training = config.training
    with pytest.raises(ValidationError):
        config.training.lr = 1.0
    assert pickle.loads(pickle.dumps(config)) == config  # what Ray ships to the workers


def test_yaml_loading_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {source: arithmetic, size: 32}\ntraining: {max_steps: 5}\n")
    config = load_config(path, ["training.max_steps=3", "training.lr=1e-3", "adapter.target_modules=[q_proj]"])
    assert config.training.max_steps == 3 and config.training.lr == 1e-3
    assert config.adapter_config().target_modules == ["q_proj"]
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["training.max_steps"])
    assert caught.value.field == "--set"
    path.write_text("- a list\n")
    with pytest.raises(ConfigError):
        load_config(path)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "absent.yaml")


def test_a_validated_config_round_trips_through_a_dict():
    """A run's recorded config (its YAML artifact) validates back to the very config that trained."""
    config = load_config(QUICKSTART)
    again = TrainConfig.from_dict(config.model_dump(mode="json"))
    assert again == config


def test_more_held_out_problems_than_the_pool_has_fail_before_training():
    from orchestration.data.arithmetic import max_held_out

    hook = "orchestration.evaluation.benchmarks:training_hook"
    evaluation = {"hook": hook, "options": {"arithmetic": {"size": max_held_out() + 1}}}
    err = error_of(minimal(evaluation=evaluation))
    assert err.field == "evaluation.options.arithmetic.size" and f"at most {max_held_out()}" in str(err)
    evaluation["options"]["arithmetic"]["size"] = max_held_out()
    assert TrainConfig.from_dict(minimal(evaluation=evaluation)).evaluation.options.arithmetic.size == max_held_out()


def test_arithmetic_evaluation_holds_out_the_runs_own_training_problems(tmp_path):
    data_file = tmp_path / "records.json"
    data_file.write_text("[]")
    hook = "orchestration.evaluation.benchmarks:training_hook"
    given = {
        "data": {"source": "arithmetic", "size": 300, "seed": 4},
        "evaluation": {"hook": hook, "options": {"arithmetic": {"size": 32}}},
    }
    config = TrainConfig.from_dict(given)
    assert config.evaluation.options.arithmetic.model_dump() == {"size": 32, "train_size": 300, "data_seed": 4}
    assert given["evaluation"]["options"]["arithmetic"] == {"size": 32}  # the input is not modified
    no_seed = TrainConfig.from_dict(
        {
            "data": {"source": "arithmetic", "size": 100},
            "training": {"seed": 9},
            "evaluation": {"hook": hook, "options": {"arithmetic": {"size": 8, "train_size": 50}}},
        }
    )
    assert no_seed.evaluation.options.arithmetic.model_dump() == {"size": 8, "train_size": 50, "data_seed": 9}  # kept
    # Training on another source, the training set to hold out must be given.
    err = error_of({"data": {"source": str(data_file)}, "evaluation": {"hook": hook, "options": {"arithmetic": {}}}})
    assert err.field == "evaluation.options.arithmetic.train_size"


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        # YAML 1.1 read yes/on as true, and pydantic then took true for the number 1
        ("data: {source: arithmetic, size: yes}\n", "data.size", "integer"),
        ("data: {source: arithmetic, size: 64}\ntraining: {max_steps: on}\n", "training.max_steps", "integer"),
        ("data: {source: arithmetic, size: 64}\ndata: {size: 8}\n", "config", "duplicate key 'data'"),
        (
            "data: {source: arithmetic, size: 64}\nevaluation:\n  hook: orchestration.evaluation.benchmarks:"
            "training_hook\n  options:\n    l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9)),
            "config",
            "100,000 values",
        ),
    ],
    ids=["yes-as-size", "on-as-max-steps", "duplicate-section", "alias-bomb-in-evaluation-options"],
)
def test_yaml_is_read_strictly(tmp_path, text, field, words):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.field == field, caught.value
    assert words in str(caught.value)


def test_overrides_are_read_strictly_and_booleans_still_work(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: {source: arithmetic, size: 64}\nmethod: comol\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, ["training.max_steps=yes"])
    assert caught.value.field == "training.max_steps"
    assert load_config(path, ["adapter.core_routing=false"]).adapter_config().core_routing is False


def test_a_binary_config_is_an_input_error_naming_the_file(tmp_path):
    from comol.errors import InputFileError

    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xff\xfe\x00\x01binary")
    with pytest.raises(InputFileError) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and "UTF-8" in str(caught.value)
