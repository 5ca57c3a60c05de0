"""``comol params`` for every method: counts equal the spec's formulas; flags a method does not use fail clearly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from method_cases import CASES
from tiny_models import tiny_config

from comol import METHODS
from orchestration.cli import main

# A setting's flag is its field name with '-' for '_' (a True-by-default switch is turned off by --no-<name>).
FLAGS = {"core_routing": "--no-core-routing"}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]


@pytest.fixture(scope="module")
def tiny_config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "config.json"
    path.write_text(json.dumps(tiny_config().to_dict()))
    return path


def run_params(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["params", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def case_flags(config: dict) -> list[str]:
    argv = []
    for field, value in config.items():
        if value is False:
            argv.append(FLAGS[field])
        else:
            value = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            argv += ["--" + field.replace("_", "-"), value]
    return argv


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_counts_equal_the_spec_formula(case, capsys, tiny_config_file):
    code, out, _ = run_params(
        capsys, "--model-config", str(tiny_config_file), "--method", case.method, "--json", *case_flags(case.config)
    )
    assert code == 0
    report = json.loads(out)
    config = METHODS[case.method].config_cls(**case.config).to_dict()
    cfg = tiny_config()
    shapes = {"q_proj": (32, 32), "k_proj": (32, 16), "v_proj": (32, 16), "o_proj": (32, 32), "down_proj": (48, 32)}
    per_layer = {leaf: case.params(n, m, config) for leaf, (n, m) in shapes.items()}
    assert report["per_target"] == {leaf: cfg.num_hidden_layers * c for leaf, c in per_layer.items()}
    assert report["trainable"] == cfg.num_hidden_layers * sum(per_layer.values())
    assert report["adapter_flops_per_token"] > 0 and report["adapted_modules"] == 2 * len(TARGETS)


def test_readable_table_for_every_method(capsys, tiny_config_file):
    for method in METHODS:
        code, out, _ = run_params(capsys, "--model-config", str(tiny_config_file), "--method", method, "--rank", "4")
        assert code == 0 and "total trainable" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "lora", "--experts", "4"], "--experts: is not used by method 'lora'"),
        (["--method", "flylora", "--experts", "4"], "--experts: is not used by method 'flylora'"),
        (["--method", "molora", "--no-core-routing"], "--no-core-routing: is not used by method 'molora'"),
        (["--method", "smear", "--no-core-routing"], "--no-core-routing: is not used by method 'smear'"),
        (["--method", "comol", "--top-k", "2"], "--top-k: is not used by method 'comol'"),
        (["--method", "hydralora", "--expert-schedule", "2,4"], "--expert-schedule: is not used by method"),
        (["--method", "molora", "--aux-loss-coef", "0.1"], "--aux-loss-coef: is not used by method 'molora'"),
        (["--method", "mola", "--experts", "4", "--expert-schedule", "2,4"], "not both"),
        (["--method", "mola", "--experts", "4", "--expert-schedule", "2,4"], "--experts: give either"),
        (["--method", "mola", "--expert-schedule", "2,four"], "--expert-schedule: must be"),
        (["--method", "mola", "--experts", "4", "--top-k", "5"], "--top-k: 5 exceeds the expert count 4"),
        (["--method", "flylora", "--rank", "4", "--top-k", "8"], "--top-k: 8 exceeds the rank 4"),
        (["--method", "adamole", "--experts", "0"], "--experts: must be an integer >= 1"),
        (["--method", "adamole", "--num-experts", "0"], "--num-experts: must be an integer >= 1"),
        (["--method", "adamole", "--aux-loss-coef", "-1"], "--aux-loss-coef: must be a finite number >= 0"),
        (["--method", "smear", "--rank", "0"], "--rank: must be a positive integer"),
        (["--method", "smear", "--r", "0"], "--r: must be a positive integer"),
        (["--method", "lora", "--num-experts", "4"], "--num-experts: is not used by method 'lora'"),
    ],
)
def test_bad_flags_fail_clearly(argv, message, capsys, tiny_config_file):
    code, out, err = run_params(capsys, "--model-config", str(tiny_config_file), *argv)
    assert code == 2 and out == ""
    assert message in err


def test_the_installed_command_exits_non_zero(tiny_config_file):
    cmd = [sys.executable, "-m", "orchestration.cli", "params", "--model-config", str(tiny_config_file)]
    done = subprocess.run([*cmd, "--method", "lora", "--experts", "4"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "--experts: is not used by method 'lora'" in done.stderr


def test_every_setting_of_every_method_is_a_flag_under_its_field_name_and_aliases(capsys, tiny_config_file):
    """Flags are derived from the config dataclasses: a field added to a method is a flag without more code."""
    import argparse

    from comol.cli.params import add_arguments
    from comol.methods import all_settings

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    flags = {option for action in parser._actions for option in action.option_strings}
    for name, per_method in all_settings().items():
        setting = next(iter(per_method.values()))
        prefix = "--no-" if setting.scalar is bool and setting.default else "--"
        for spelling in setting.spellings:
            assert prefix + spelling.replace("_", "-") in flags, (name, spelling)
    assert {"--rank", "--r", "--experts", "--num-experts", "--targets", "--target-modules"} <= flags
    code, out, _ = run_params(capsys, "--model-config", str(tiny_config_file), "--method", "comol", "--json")
    default = json.loads(out)
    code, out, _ = run_params(
        capsys, "--model-config", str(tiny_config_file), "--method", "comol", "--json", "--num-experts", "3", "--r", "4"
    )
    aliased = run_params(
        capsys, "--model-config", str(tiny_config_file), "--method", "comol", "--json", "--experts", "3", "--rank", "4"
    )
    assert code == 0 and aliased[0] == 0 and json.loads(out) == json.loads(aliased[1]) != default
    assert json.loads(out)["adapter"]["num_experts"] == 3 and json.loads(out)["adapter"]["r"] == 4
