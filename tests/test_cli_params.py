"""`comol params`: the spec's published figures, the JSON interface, and clear failures on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from comol.model_configs import SHIPPED, load_model_config_dict
from orchestration.cli import main

QWEN3_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "down_proj")


def run_json(capsys, *argv: str) -> dict:
    assert main(["params", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def qwen3_layer_shapes(cfg: dict) -> dict[str, tuple[int, int]]:
    """(in, out) of each target projection, from the config's architecture numbers."""
    h, kv = cfg["hidden_size"], cfg["num_key_value_heads"] * cfg["head_dim"]
    q = cfg["num_attention_heads"] * cfg["head_dim"]
    return {
        "q_proj": (h, q),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (q, h),
        "down_proj": (cfg["intermediate_size"], h),
    }


def test_spec_figures_on_qwen3_8b(capsys):
    cfg = load_model_config_dict("qwen3-8b")
    shapes, layers, r, N = qwen3_layer_shapes(cfg), cfg["num_hidden_layers"], 16, 8
    lora = run_json(capsys, "--model-config", "qwen3-8b", "--method", "lora", "--rank", "16")
    comol = run_json(capsys, "--model-config", "qwen3-8b", "--method", "comol", "--rank", "16", "--experts", "8")
    expected_lora = layers * sum(r * (n + m) for n, m in shapes.values())
    assert lora["trainable"] == expected_lora
    assert comol["trainable"] == expected_lora + layers * len(shapes) * (N * r * r + N * r)
    # the paper's public yardsticks: 24.77 M for LoRA, 25.16 M for CoMoL
    assert round(lora["trainable"] / 1e6, 2) == 24.77
    assert round(comol["trainable"] / 1e6, 2) == 25.16
    assert 8.0e9 < comol["base"] < 8.3e9
    assert set(comol["per_target"]) == set(QWEN3_TARGETS)
    assert sum(comol["per_target"].values()) == comol["trainable"]
    assert comol["adapter_flops_per_token"] > lora["adapter_flops_per_token"] > 0


def test_no_core_routing_adds_router_on_x(capsys):
    cfg = load_model_config_dict("qwen3-8b")
    base = ["--model-config", "qwen3-8b", "--method", "comol", "--rank", "16", "--experts", "8"]
    with_cr = run_json(capsys, *base)
    without = run_json(capsys, *base, "--no-core-routing")
    shapes = qwen3_layer_shapes(cfg)
    extra = cfg["num_hidden_layers"] * sum(8 * (n - 16) for n, _ in shapes.values())
    assert without["trainable"] - with_cr["trainable"] == extra


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_configs_and_custom_targets(capsys, name):
    out = run_json(capsys, "--model-config", name, "--method", "comol", "--targets", "q_proj,up_proj")
    assert set(out["per_target"]) == {"q_proj", "up_proj"}
    assert out["trainable"] > 0 and out["adapted_modules"] == 2 * load_model_config_dict(name)["num_hidden_layers"]


def test_alpha_does_not_change_counts(capsys):
    a = run_json(capsys, "--model-config", "llama-3.1-8b", "--method", "comol", "--alpha", "32")
    b = run_json(capsys, "--model-config", "llama-3.1-8b", "--method", "comol")
    assert a["trainable"] == b["trainable"] and a["adapter"]["alpha"] == 32.0 and b["adapter"]["alpha"] == 16.0


def test_table_output(capsys):
    assert main(["params", "--model-config", "qwen3-8b", "--method", "comol"]) == 0
    out = capsys.readouterr().out
    assert "25,164,288" in out and "down_proj" in out


BAD = [
    (["--method", "comol", "--rank", "0"], "rank"),
    (["--method", "comol", "--rank", "-4"], "rank"),
    (["--method", "comol", "--experts", "0"], "experts"),
    (["--method", "comol", "--alpha", "0"], "alpha"),
    (["--method", "comol", "--alpha", "-1"], "alpha"),
    (["--method", "comol", "--targets", "nothing_like_this"], "target_modules"),
    (["--method", "lora", "--experts", "4"], "--experts"),
    (["--method", "lora", "--no-core-routing"], "--no-core-routing"),
]


@pytest.mark.parametrize(("argv", "field"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_arguments_fail_clearly(capsys, argv, field):
    assert main(["params", "--model-config", "qwen3-8b", *argv]) != 0
    err = capsys.readouterr().err
    assert field in err and "error" in err


def test_unmatched_target_lists_linear_names(capsys):
    main(["params", "--model-config", "qwen3-8b", "--method", "comol", "--targets", "qkv"])
    err = capsys.readouterr().err
    assert all(name in err for name in ("q_proj", "gate_proj", "down_proj", "lm_head"))


def test_unknown_method_is_rejected_by_the_cli(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["params", "--model-config", "qwen3-8b", "--method", "dora"])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    assert "--method" in err and "comol" in err and "lora" in err


@pytest.mark.parametrize("content", ["{not json", '{"hidden_size": 8}', "[]"])
def test_malformed_config_files(tmp_path, capsys, content):
    path = tmp_path / "config.json"
    path.write_text(content)
    assert main(["params", "--model-config", str(path), "--method", "comol"]) == 2
    assert "model-config" in capsys.readouterr().err


def test_missing_config_file(tmp_path, capsys):
    assert main(["params", "--model-config", str(tmp_path / "absent.json"), "--method", "comol"]) == 2
    err = capsys.readouterr().err
    assert "model-config" in err and "qwen3-8b" in err


def test_console_script_exit_codes():
    """The installed `comol` entry point itself: success prints JSON, bad input exits non-zero."""
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestration.cli",
            "params",
            "--model-config",
            "qwen3-8b",
            "--method",
            "lora",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["trainable"] > 0
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestration.cli",
            "params",
            "--model-config",
            "qwen3-8b",
            "--method",
            "comol",
            "--rank",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "rank" in bad.stderr
