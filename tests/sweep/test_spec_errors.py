"""Malformed sweep specs fail clearly — the message names the field — before MLflow or Ray are touched."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from comol.errors import ConfigError
from orchestration.cli import main
from orchestration.sweep.runner import prepare

BASE: dict[str, Any] = {
    "name": "bad-spec",
    "entry": "smoke",
    "train": {"model": "smollm2-135m", "data": {"size": 16}, "training": {"max_steps": 2, "batch_size": 4}},
    "search": {"grid": {"method": ["comol"], "rank": [4, 8]}},
}


def _with(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """BASE with ``a.b.c`` set to value (``None`` value with a ``-`` prefix deletes the key)."""
    spec = copy.deepcopy(base or BASE)
    delete = path.startswith("-")
    keys = path.lstrip("-").split(".")
    node = spec
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    if delete:
        node.pop(keys[-1])
    else:
        node[keys[-1]] = value
    return spec


OPTUNA = _with("search", {"optuna": {"num_samples": 2, "space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}}})

# Nine levels of nine aliases: 9**9 (387 million) values once expanded, in a few hundred bytes.
ALIAS_BOMB = "l0: &l0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)
)

# (id, spec or raw YAML text, the field the error must name, a word the message must contain)
CASES: list[tuple[str, Any, str, str]] = [
    ("not-a-mapping", "- just\n- a list\n", "spec", "mapping"),
    ("invalid-yaml", "name: [unclosed\n", "spec", "YAML"),
    ("missing-name", _with("-name", None), "name", "required"),
    ("bad-name", _with("name", "my sweep!"), "name", "letters, digits"),
    ("unknown-top-key", _with("sead", [0]), "sead", "allowed"),
    ("base-row-not-bool", _with("base_row", "maybe"), "base_row", "bool"),
    ("no-search", _with("search", {}), "search", "exactly one"),
    ("grid-and-optuna", _with("search.optuna", OPTUNA["search"]["optuna"]), "search", "exactly one"),
    ("unknown-axis", _with("search.grid.rnk", [4]), "search.grid.rnk", "allowed"),
    ("rank-zero", _with("search.grid.rank", [0, 4]), "search.grid.rank", "positive"),
    ("rank-repeated", _with("search.grid.rank", [4, 4]), "search.grid.rank", "repeated"),
    ("rank-not-int", _with("search.grid.rank", ["four"]), "search.grid.rank[0]", "integer"),
    ("r-zero", _with("search.grid", {"method": ["comol"], "r": [0, 4]}), "search.grid.r", "positive"),
    ("one-axis-spelled-twice", _with("search.grid", {"rank": [4], "r": [8]}), "search.grid", "one axis"),
    # YAML read strictly: a key given twice, YAML 1.1's yes/no where a number is meant, an alias bomb
    (
        "duplicate-key",
        "name: a\nname: b\nsearch: {grid: {method: [comol], rank: [4, 8]}}\n",
        "spec",
        "duplicate key 'name'",
    ),
    (
        "rank-yes",
        "name: yes-rank\nentry: smoke\ntrain: {model: smollm2-135m, data: {size: 16}}\n"
        "search: {grid: {method: [comol], rank: [yes, 8]}}\n",
        "search.grid.rank[0]",
        "integer",
    ),
    ("alias-bomb", "name: bomb\nsearch: {grid: {method: [comol], rank: [4]}}\n" + ALIAS_BOMB, "spec", "100,000"),
    (
        "alias-bomb-in-evaluation-options",
        "name: bomb\nsearch: {grid: {method: [comol], rank: [4]}}\ntrain:\n  evaluation:\n    options:\n"
        + "".join(f"      {line}\n" for line in ALIAS_BOMB.splitlines()),
        "spec",
        "100,000",
    ),
    (
        "num-experts-on-lora",
        _with("search.grid", {"method": ["lora"], "num_experts": [4]}),
        "search.grid.num_experts",
        "lora",
    ),
    (
        "variant-adapter-repeats-its-axis",
        _with("search.grid", {"variants": [{"method": "comol", "r": 4, "adapter": {"r": 8}}]}),
        "search.grid.variants[0].adapter.r",
        "one place",
    ),
    (
        "variant-adapter-not-a-setting",
        _with("search.grid", {"variants": [{"method": "lora", "adapter": {"top_k": 2}}]}),
        "search.grid.variants[0].adapter.top_k",
        "lora",
    ),
    ("experts-on-lora", _with("search.grid", {"method": ["lora"], "experts": [4]}), "search.grid.experts", "lora"),
    (
        "routing-on-lora-variant",
        _with("search.grid", {"variants": [{"method": "lora", "core_routing": False}]}),
        "search.grid.variants[0].core_routing",
        "lora",
    ),
    (
        "unknown-method",
        _with("search.grid", {"variants": [{"method": "dora"}]}),
        "search.grid.variants[0].method",
        "unknown method",
    ),
    (
        "alpha-and-multiplier",
        _with("search.grid", {"alpha": [8.0], "alpha_multiplier": [2.0]}),
        "search.grid",
        "alpha_multiplier",
    ),
    (
        "axis-twice",
        _with("search.grid", {"rank": [4], "variants": [{"method": "comol", "rank": 8}]}),
        "search.grid",
        "also a grid axis",
    ),
    (
        "same-config-twice",
        _with(
            "search.grid", {"variants": [{"method": "lora"}, {"method": "lora", "alpha_multiplier": 1.0}], "rank": [4]}
        ),
        "search.grid",
        "same trial config",
    ),
    ("no-seeds", _with("seeds", []), "seeds", "at least one"),
    ("repeated-seeds", _with("seeds", [0, 0]), "seeds", "repeated"),
    ("bad-mode", _with("mode", "up"), "mode", "'max' or 'min'"),
    ("bad-entry", _with("entry", "gpu"), "entry", "'train' or 'smoke'"),
    ("bad-tracking-uri", _with("tracking", {"uri": "mlruns"}), "tracking.uri", "sqlite:///"),
    (
        "optuna-range-reversed",
        _with("search.optuna.space.lr", {"low": 1e-2, "high": 1e-4}, OPTUNA),
        "search.optuna.space.lr",
        "below",
    ),
    (
        "optuna-range-unknown-key",
        _with("search.optuna.space.lr", {"low": 1e-4, "high": 1e-2, "logscale": True}, OPTUNA),
        "search.optuna.space.lr.logscale",
        "allowed",
    ),
    ("optuna-zero-samples", _with("search.optuna.num_samples", 0, OPTUNA), "search.optuna.num_samples", "greater"),
    (
        "optuna-axis-no-method-has",
        _with("search.optuna.space", {"method": ["lora"], "experts": [4, 8]}, OPTUNA),
        "search.optuna.space.experts",
        "not a setting",
    ),
    (
        "asha-grace-beyond-max",
        _with("search.optuna.asha", {"metric": "train/loss", "mode": "min", "max_t": 2, "grace_period": 5}, OPTUNA),
        "search.optuna.asha",
        "grace_period",
    ),
    ("train-unknown-key", _with("train.trainer", {}), "train.trainer", "allowed"),
    ("train-negative-lr", _with("train.training.lr", -1.0), "train.training.lr", "greater"),
    (
        "train-batch-not-divisible",
        _with("train.resources", {"num_workers": 3}),
        "train.training.batch_size",
        "divisible",
    ),
    (
        "base-adapter-field-on-lora",
        _with("search.grid", {"variants": [{"method": "lora"}]}, _with("train.adapter", {"num_experts": 4})),
        "train.adapter.num_experts",
        "lora",
    ),
]


@pytest.mark.parametrize(("case", "spec", "field", "word"), CASES, ids=[c[0] for c in CASES])
def test_malformed_spec_names_the_field(tmp_path: Path, case: str, spec: Any, field: str, word: str) -> None:
    path = tmp_path / f"{case}.yaml"
    path.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    with pytest.raises(ConfigError) as info:
        prepare(path, str(tmp_path / "out"))
    assert info.value.field == field, str(info.value)
    assert word in str(info.value), str(info.value)
    assert not (tmp_path / "out").exists()  # nothing was written before validation passed


def test_cli_fails_before_mlflow_or_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Exit code 2 and one line naming the field; no MLflow store created, and the bogus Ray address is never
    dialled (the runner validates, then opens MLflow, then joins Ray: no store means Ray was not reached)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for case, spec, field, _word in CASES[2:8]:
        path = tmp_path / f"{case}.yaml"
        path.write_text(yaml.safe_dump(spec))
        assert main(["sweep", str(path), "--address", "127.0.0.1:1"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"comol sweep: error: {field}"), err
        assert err.count("\n") == 1, err
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "outputs").exists()


def test_shipped_specs_validate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every spec in search_spaces/ plans cleanly (every trial config validated, nothing started), from the
    repository root as the README runs them (their data paths are relative to it)."""
    root = Path(__file__).resolve().parents[2] / "search_spaces"
    monkeypatch.chdir(root.parent)
    specs = sorted(root.glob("*.yaml"))
    assert {p.name for p in specs} >= {
        "quickstart.yaml",
        "paper_math_qwen3_8b.yaml",
        "paper_math_qwen3_14b.yaml",
        "paper_code_llama31_8b.yaml",
        "equal_rank_math_qwen3_8b.yaml",
        "equal_rank_code_llama31_8b.yaml",
        "ablation_experts.yaml",
        "ablation_rank.yaml",
        "hpo_optuna.yaml",
    }
    for path in specs:
        spec, _paths, plan = prepare(path, "/nonexistent/out")
        assert plan.configurations >= 2, path
        if spec.search.kind == "grid":
            assert len(plan.trials) == plan.configurations * len(spec.seeds)


def test_axes_are_the_config_fields_and_their_aliases_one_configuration_either_way(tmp_path: Path) -> None:
    """One name per setting: an axis is a config field (``r``, ``num_experts``), the old spellings (``rank``,
    ``experts``) are the same axis, and a setting no table lists (``dropout``, MoLA's ``top_k``) is an axis too."""
    from orchestration.sweep.axes import AXES

    assert {"method", "r", "num_experts", "core_routing", "alpha", "alpha_multiplier", "lr"} <= set(AXES)
    assert AXES["r"].aliases == ("rank",) and AXES["num_experts"].aliases == ("experts",)

    def planned(grid: dict[str, Any]) -> list[Any]:
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(_with("search.grid", grid)))
        return prepare(path, str(tmp_path / "out"))[2].trials

    aliased = planned({"variants": [{"method": "lora"}, {"method": "comol", "experts": 2}], "rank": [4, 8]})
    named = planned({"variants": [{"method": "lora"}, {"method": "comol", "num_experts": 2}], "r": [4, 8]})
    assert [t.key for t in aliased] == [t.key for t in named] and len(named) == 12
    assert {(t.method, t.train.adapter.r) for t in named} == {(m, r) for m in ("lora", "comol") for r in (4, 8)}

    swept = planned({"variants": [{"method": "mola", "num_experts": 4}], "top_k": [1, 2], "dropout": [0.0, 0.1]})
    assert {(t.train.adapter.top_k, t.train.adapter.dropout) for t in swept} == {
        (k, d) for k in (1, 2) for d in (0.0, 0.1)
    }


def test_configurations_keep_the_ids_their_runs_were_recorded_with(tmp_path: Path) -> None:
    """A configuration's config_id is its identity in MLflow: a resumed sweep finds its finished runs by it. These
    ids were recorded before the axes, the options and the adapter became typed; a change that moves them must be
    a deliberate one (it would make a resumed sweep train every configuration again). The dropout is spelled out:
    its default moved to the authors' 0.1 since, and a configuration that trains with another dropout is another
    configuration."""
    spec = {
        "name": "identity",
        "train": {
            "model": "smollm2-135m",
            "adapter": {"target_modules": ["q_proj", "v_proj"], "dropout": 0.0},
            "data": {"size": 64, "seed": 3},
            "training": {"max_steps": 10, "batch_size": 4},
        },
        "search": {
            "grid": {"variants": [{"method": "lora"}, {"method": "comol", "experts": 4, "core_routing": False}]}
        },
        "seeds": [0, 1],
    }
    spec["search"]["grid"]["rank"] = [8]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    _spec, _paths, plan = prepare(path, "/runs")
    assert [t.key for t in plan.trials] == ["6dc2a35631ca-s0", "6dc2a35631ca-s1", "d851bccd5d7c-s0", "d851bccd5d7c-s1"]
