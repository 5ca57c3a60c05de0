"""``comol sweep SPEC --dry-run --json``: the cost of every planned configuration before anything is launched.

The paper spec must show the paper's parameter column; the numbers must be comol's accounting (and match a
real, non-meta model); bad input exits 2 with one paragraph and nothing on stdout; nothing is written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from comol import count_cost, inject_adapter, make_config
from comol.model_configs import load_model_config_dict, shipped_config
from orchestration.cli import main

ROOT = Path(__file__).resolve().parents[2]


def dry_run(spec: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["sweep", str(spec), "--dry-run", "--json"])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def copy_spec(name: str, directory: Path, **train: Any) -> Path:
    """A shipped spec with its relative data path made absolute, so it runs from an empty folder."""
    spec = yaml.safe_load((ROOT / "search_spaces" / name).read_text())
    source = spec["train"]["data"]["source"]
    spec["train"]["data"]["source"] = str((ROOT / source).resolve())
    spec["train"].update(train)
    path = directory / name
    path.write_text(yaml.safe_dump(spec))
    return path


def per_layer(method: str, r: int, experts: int | None, n: int, m: int) -> int:
    """Trainable parameters of one adapted n → m layer, by the formulas of the methods spec."""
    formulas = {
        "lora": r * (n + m),
        "molora": experts * r * (n + m) + experts * n if experts else 0,
        "hydralora": r * n + experts * r * m + experts * n if experts else 0,
        "adamole": experts * r * (n + m) + experts * n + n + 1 if experts else 0,
        "flylora": m * r,
        "comol": r * (n + m) + experts * r * r + experts * r if experts else 0,
    }
    formulas["mola"] = formulas["smear"] = formulas["molora"]
    return formulas[method]


def table_column(config: dict[str, Any], method: str, r: int, experts: int | None) -> int:
    """The paper's parameter column: the formulas over q, k, v, o and down of every decoder layer."""
    h, heads, kv = config["hidden_size"], config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or h // heads
    shapes = [(h, heads * head_dim), (h, kv * head_dim), (h, kv * head_dim), (heads * head_dim, h)]
    shapes.append((config["intermediate_size"], h))
    return config["num_hidden_layers"] * sum(per_layer(method, r, experts, n, m) for n, m in shapes)


def test_paper_math_spec_shows_the_papers_parameter_column(tmp_path, monkeypatch, capsys):
    spec = copy_spec("paper_math_qwen3_8b.yaml", tmp_path)
    monkeypatch.chdir(tmp_path)
    rc, out, err = dry_run(spec, capsys)
    assert rc == 0, err
    plan = json.loads(out)
    assert [plan[k] for k in ("sweep", "kind", "configurations", "trials")] == ["paper-math-qwen3-8b", "grid", 8, 24]
    assert plan["model_config"] == str(shipped_config("Qwen/Qwen3-8B"))  # offline: the shipped config stands in
    rows = {row["method"]: row for row in plan["planned"]}
    expected = {  # the paper's tables: CoMoL r = 16; the MoE baselines r = 8 per expert, N = 8; FlyLoRA r = 32
        "lora": (16, None),
        "molora": (8, 8),
        "hydralora": (8, 8),
        "mola": (8, 8),
        "adamole": (8, 8),
        "smear": (8, 8),
        "flylora": (32, None),
        "comol": (16, 8),
    }
    assert set(rows) == set(expected)
    config = load_model_config_dict("qwen3-8b")
    for method, (rank, experts) in expected.items():
        row = rows[method]
        assert (row["r"], row["num_experts"], row["alpha"]) == (rank, experts, float(rank)), row
        assert row["core_routing"] == (True if method == "comol" else None)
        assert row["trainable"] == table_column(config, method, rank, experts), method
    assert round(rows["molora"]["trainable"] / 1e6, 2) == 107.35  # the table's MoLoRA, not 206 M at r = 16
    assert round(rows["comol"]["trainable"] / 1e6, 1) == 25.2 and round(rows["lora"]["trainable"] / 1e6, 1) == 24.8
    assert rows["flylora"]["adapter"]["top_k"] == 8 and rows["mola"]["adapter"]["top_k"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [spec.name]  # a dry run writes nothing


def test_counts_are_comols_accounting_and_a_real_models(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """Grid and Optuna corners on the tiny model: every count equals the real (non-meta) injected model's."""
    train = {
        "model": str(tiny_model_dir),
        "adapter": {"target_modules": ["q_proj", "v_proj", "down_proj"]},
        "data": {"size": 16},
        "training": {"max_steps": 2, "batch_size": 4},
    }
    grid = {
        "name": "dry-grid",
        "entry": "smoke",
        "train": train,
        "search": {
            "grid": {
                "variants": [
                    {"method": "lora", "r": 4},
                    {"method": "molora", "r": 2, "num_experts": 4},
                    {"method": "comol", "r": 8, "num_experts": 2, "core_routing": False, "alpha": 4.0},
                ]
            }
        },
    }
    optuna = {
        "name": "dry-optuna",
        "entry": "smoke",
        "train": train,
        "search": {
            "optuna": {
                "num_samples": 3,
                "space": {
                    "method": ["lora", "comol"],
                    "r": [2, 4],
                    "num_experts": [2, 3],
                    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
                },
            }
        },
    }
    monkeypatch.chdir(tmp_path)
    for spec, key, count in ((grid, "planned", 3), (optuna, "corners", (2 + 4) * 2)):
        path = tmp_path / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec))
        rc, out, err = dry_run(path, capsys)
        assert rc == 0, err
        plan = json.loads(out)
        assert len(plan[key]) == count and plan["model_config"] == str(tiny_model_dir / "config.json")
        for row in plan[key]:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
            inject_adapter(model, make_config(row["method"], **row["adapter"]))
            real = count_cost(model)
            assert (row["trainable"], row["adapter_flops_per_token"]) == (real.trainable, real.adapter_flops_per_token)
            assert row["r"] == row["adapter"]["r"] and row["alpha"] == row["adapter"]["alpha"]
    assert "corners" in plan and "cannot be listed" in plan["note"]
    comol_row = next(r for r in json.loads(out)["corners"] if r["method"] == "comol")
    assert comol_row["core_routing"] is True and comol_row["num_experts"] in (2, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dry-grid.yaml", "dry-optuna.yaml"]


@pytest.mark.parametrize(
    ("case", "argv_extra", "train", "field"),
    [
        ("json-without-dry-run", ["--json"], {}, "json"),
        ("unknown-hub-model", ["--dry-run", "--json"], {"model": "nobody/not-a-model"}, "train.model"),
        ("misspelt-postprocess", ["--dry-run", "--json"], None, "train.evaluation.options.postprocess"),
    ],
)
def test_bad_input_exits_2_with_one_paragraph_and_no_json(
    case, argv_extra, train, field, tmp_path, monkeypatch, capsys
):
    if train is None:  # the code spec with a clean-up name that does not exist
        spec = yaml.safe_load((ROOT / "search_spaces" / "paper_code_llama31_8b.yaml").read_text())
        spec["train"]["data"]["source"] = str((ROOT / spec["train"]["data"]["source"]).resolve())
        spec["train"]["evaluation"]["options"]["postprocess"] = "Standard"
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(spec))
    else:
        path = copy_spec("paper_math_qwen3_8b.yaml", tmp_path, **train)
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", str(path), *argv_extra]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing a JSON reader could mistake for a plan
    assert captured.err.startswith(f"comol sweep: error: {field}"), captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_paper_models_resolve_to_shipped_configs_offline():
    assert shipped_config("Qwen/Qwen3-8B").name == "qwen3-8b.json"
    assert shipped_config("Qwen/Qwen3-14B").name == "qwen3-14b.json"
    # the code setting's Instruct model has the base model's shapes
    assert shipped_config("meta-llama/Llama-3.1-8B-Instruct").name == "llama-3.1-8b.json"
    assert shipped_config("meta-llama/Llama-3.1-8B").name == "llama-3.1-8b.json"
    assert shipped_config("someone/other-model") is None
