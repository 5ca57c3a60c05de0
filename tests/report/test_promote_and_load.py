"""``comol promote`` / ``load_registered_adapter`` / ``comol generate`` against a real MLflow server and registry."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch
from sweep_record import greedy, trial_model

from comol.errors import ConfigError
from orchestration.cli import main
from orchestration.registry import promote as promote_module
from orchestration.registry.loading import load_registered_adapter, run_model_id
from orchestration.registry.promote import promote
from orchestration.tracking import schema
from orchestration.tracking.store import client_for

PROMPTS = ["What is 3 + 4?", "Add 12 and 30.", "Tom has 5 apples and eats 2. How many are left?"]


@pytest.fixture(scope="module")
def champion(sweep_a, mlflow_server):
    """Sweep A promoted into a fresh registered model (forced: its best is not significantly better than LoRA)."""
    name = f"comol-test-{uuid.uuid4().hex[:8]}"
    return promote(sweep_a.name, name, tracking_uri=mlflow_server.uri, force=True)


def test_promotion_picks_by_seed_mean_and_registers_the_median_seed(champion, sweep_a, mlflow_server):
    runs = sweep_a.runs
    lucky = max(runs, key=lambda r: r.metrics[schema.METRIC_AVERAGE])
    by_config: dict[str, list] = {}
    for run in runs:
        by_config.setdefault(run.config_id, []).append(run)
    means = {cid: np.mean([r.metrics[schema.METRIC_AVERAGE] for r in rs]) for cid, rs in by_config.items()}
    best = max(means, key=means.get)
    assert lucky.config_id != best  # the best single seed belongs to another configuration (LoRA r=4, 0.71)
    assert champion.choice.config_id == best and champion.choice.label == "CoMoL r=4 N=4"

    ordered = sorted(by_config[best], key=lambda r: r.metrics[schema.METRIC_AVERAGE])
    median = ordered[1]
    assert median.seed == 2  # values by seed 0.64, 0.60, 0.62: the median is seed 2's
    client = client_for(mlflow_server.uri)
    version = client.get_model_version_by_alias(champion.model_name, "champion")
    assert version.version == champion.version == "1"
    assert version.run_id == median.run_id
    tags = version.tags
    values = [r.metrics[schema.METRIC_AVERAGE] for r in by_config[best]]
    assert tags[promote_module.TAG_SWEEP] == sweep_a.name
    assert tags[promote_module.TAG_CONFIG_ID] == best
    assert float(tags[promote_module.TAG_MEAN]) == pytest.approx(np.mean(values))
    assert float(tags[promote_module.TAG_STD]) == pytest.approx(np.std(values, ddof=1))
    assert tags[promote_module.TAG_METRIC] == schema.METRIC_AVERAGE
    assert tags[promote_module.TAG_BASE_MODEL] == str(sweep_a.base)
    assert tags[promote_module.TAG_METHOD] == "comol"
    assert tags[promote_module.TAG_SEED] == "2" and tags[promote_module.TAG_SEEDS] == "3"
    assert tags[promote_module.TAG_GATE] == "forced"
    assert not [k for k in tags if k.startswith("param.")] and len(tags) <= 12  # the config stays on the run
    assert (
        version.description.startswith("**CoMoL r=4 N=4**")
        and "**Forced** past the promotion gate" in version.description
    )
    assert f"{mlflow_server.uri}/#/experiments/" in version.description and median.run_id in version.description
    assert "workflowType=machine_learning" in version.description  # the link opens on the runs, not on traces
    assert version.source == f"models:/{run_model_id(client, median.run_id)}"  # the run's adapter as an MLflow Model


def test_alias_moves_and_the_former_champion_keeps_previous(sweep_a, sweep_b, mlflow_server, capsys):
    name = f"comol-test-{uuid.uuid4().hex[:8]}"
    client = client_for(mlflow_server.uri)
    uri = mlflow_server.uri
    assert main(["promote", sweep_a.name, "--model-name", name, "--force", "--tracking-uri", uri]) == 0
    first = client.get_model_version_by_alias(name, "champion")
    assert main(["promote", sweep_b.name, "--model-name", name, "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "former champion version 1 keeps alias previous" in out
    second = client.get_model_version_by_alias(name, "champion")
    assert (first.version, second.version) == ("1", "2")
    assert client.get_model_version_by_alias(name, "previous").version == "1"
    best_b = max(sweep_b.runs, key=lambda r: r.metrics[schema.METRIC_AVERAGE])  # 2 seeds: the lower is the median
    assert second.run_id != best_b.run_id and second.tags[promote_module.TAG_SEED] == "0"

    # Promoting the same champion again registers nothing and moves nothing.
    assert main(["promote", sweep_b.name, "--model-name", name, "--tracking-uri", uri]) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert len(client.search_model_versions(f"name = '{name}'")) == 2
    assert client.get_model_version_by_alias(name, "previous").version == "1"

    # A custom alias gets its own previous alias.
    result = promote(sweep_a.name, name, alias="staging", tracking_uri=uri, force=True)
    assert result.created and result.previous_version is None
    assert client.get_model_version_by_alias(name, "staging").version == "3"


def test_bad_input_changes_nothing(sweep_a, mlflow_server, capsys):
    name = f"comol-test-{uuid.uuid4().hex[:8]}"
    uri = mlflow_server.uri
    with pytest.raises(ConfigError, match=r"metric: no finished run .* has metric 'eval/nope/accuracy'"):
        promote(sweep_a.name, name, metric="eval/nope/accuracy", tracking_uri=uri)
    assert main(["promote", "no-such-sweep", "--model-name", name, "--tracking-uri", uri]) == 2
    assert "no sweep 'no-such-sweep'" in capsys.readouterr().err
    assert main(["promote", sweep_a.name, "--model-name", name, "--alias", "previous", "--tracking-uri", uri]) == 2
    assert "alias: 'previous' cannot be promoted to" in capsys.readouterr().err
    assert client_for(uri).search_registered_models(f"name = '{name}'") == []


def test_loaded_champion_reproduces_the_trial(champion, sweep_a, mlflow_server):
    model, tokenizer, template = load_registered_adapter(
        f"models:/{champion.model_name}@champion", tracking_uri=mlflow_server.uri
    )
    assert template == "alpaca"  # the adapter records no template: it was trained with the default
    run = next(r for r in sweep_a.runs if r.run_id == champion.choice.run.run_id)
    trained, _ = trial_model(sweep_a.base, run.method, run.adapter, run.seed)
    other, _ = trial_model(sweep_a.base, run.method, run.adapter, (run.seed + 1) % 3)  # a sibling seed differs
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = tokenizer(prompt, return_tensors="pt")
            expected = trained(**ids).logits
            got = model(**ids).logits
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
            assert not torch.allclose(got, other(**ids).logits)


def test_generate_prints_the_completion(champion, sweep_a, mlflow_server, capsys):
    from orchestration.data.prompts import build_prompt
    from orchestration.models import load_tokenizer

    run = next(r for r in sweep_a.runs if r.run_id == champion.choice.run.run_id)
    trained, _ = trial_model(sweep_a.base, run.method, run.adapter, run.seed)
    expected = greedy(trained, load_tokenizer(str(sweep_a.base)), build_prompt(PROMPTS[0]), max_new_tokens=12)
    argv = [
        "generate",
        "--model",
        f"models:/{champion.model_name}@champion",
        "--prompt",
        PROMPTS[0],
        "--max-new-tokens",
        "12",
        "--tracking-uri",
        mlflow_server.uri,
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert expected.strip() and printed == expected + "\n"


def test_median_seed_of_an_even_count_is_the_lower_middle():
    from orchestration.registry.promote import median_run
    from orchestration.tracking.reader import TrialRun

    runs = [TrialRun(f"r{s}", "c", s, "comol", None, {}, {"m": v}, "") for s, v in enumerate([0.9, 0.1, 0.5, 0.7])]
    assert median_run(runs, "m")[0].seed == 2  # sorted 0.1, 0.5, 0.7, 0.9 → 0.5 (seed 2)
    assert median_run(runs[:3], "m")[0].seed == 2


def test_generate_prompts_with_the_template_the_adapter_was_trained_with(tiny_base, mlflow_server, capsys, tmp_path):
    """An adapter trained with ``data.prompt_template: short`` records it; ``comol generate`` wraps the prompt in
    that template, not in the Alpaca default."""
    from comol import save_adapter
    from orchestration.data.prompts import build_prompt, record_template
    from orchestration.models import load_tokenizer

    trained, config = trial_model(tiny_base, "lora", {"r": 4}, seed=5)
    save_adapter(trained, tmp_path / "adapter", config)
    record_template(tmp_path / "adapter", "short")
    client = client_for(mlflow_server.uri)
    experiment = client.create_experiment(f"comol-test-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment).info.run_id
    client.log_artifacts(run_id, str(tmp_path / "adapter"), schema.ADAPTER_ARTIFACT)
    uri = f"runs:/{run_id}/{schema.ADAPTER_ARTIFACT}"

    assert load_registered_adapter(uri, tracking_uri=mlflow_server.uri).prompt_template == "short"
    tokenizer = load_tokenizer(str(tiny_base))
    short = greedy(trained, tokenizer, build_prompt(PROMPTS[2], template="short"), max_new_tokens=12)
    alpaca = greedy(trained, tokenizer, build_prompt(PROMPTS[2]), max_new_tokens=12)
    assert short.strip() and short != alpaca  # the two templates really lead to different completions
    argv = ["generate", "--model", uri, "--prompt", PROMPTS[2], "--max-new-tokens", "12"]
    assert main([*argv, "--tracking-uri", mlflow_server.uri]) == 0
    assert capsys.readouterr().out == short + "\n"


def test_the_gate_refuses_a_challenger_the_reports_test_does_not_find_better(sweep_a, sweep_b, mlflow_server, capsys):
    """Sweep A's best (CoMoL r=4 N=4, 0.62) is not significantly better than its LoRA r=4 (0.50, 0.52, 0.71):
    refused, and ``--dry-run`` writes nothing either way; ``--force`` promotes and says so. Sweep B's best then
    beats that champion and its LoRA: it passes. Sweep A's best, below the new champion, is refused again."""
    from scipy import stats

    from orchestration.report.build import build_report
    from orchestration.tracking.reader import load_sweep

    name = f"comol-test-{uuid.uuid4().hex[:8]}"
    uri = mlflow_server.uri
    client = client_for(uri)
    argv = ["promote", sweep_a.name, "--model-name", name, "--tracking-uri", uri]

    report = build_report(load_sweep(client, sweep_a.name))  # the p the report itself prints for this pair
    p_report = report.significance.at[report.best, "vs reference p_holm"]
    assert report.table.at[report.reference, "label"] == "LoRA r=4" and p_report > 0.05
    for extra in (["--dry-run"], []):
        assert main([*argv, *extra]) == 1
        out = capsys.readouterr().out
        assert "vs LoRA: LoRA r=4" in out and "gate: refuses: not better than LoRA" in out
        assert f"p = {p_report:.3g}: not better" in out
        assert client.search_registered_models(f"name = '{name}'") == []  # refused or dry: nothing written
    assert main([*argv, "--force", "--dry-run"]) == 0
    assert "would promote CoMoL r=4 N=4" in capsys.readouterr().out
    assert client.search_registered_models(f"name = '{name}'") == []
    assert main([*argv, "--force"]) == 0
    assert "forced past the gate" in capsys.readouterr().out
    assert client.get_model_version_by_alias(name, "champion").tags[promote_module.TAG_GATE] == "forced"

    challenger = promote(sweep_b.name, name, tracking_uri=uri)
    assert challenger.created and not challenger.forced and challenger.decision.passed
    champion_values = [0.64, 0.60, 0.62]  # sweep A's CoMoL r=4 N=4 seeds
    expected = stats.ttest_ind([0.70, 0.72], champion_values, equal_var=False).pvalue
    versus = {o.role: o for o in challenger.decision.opponents}
    assert versus["champion"].p == pytest.approx(expected) and versus["champion"].better
    assert versus["LoRA"].better and versus["LoRA"].label == "LoRA r=4"
    version = client.get_model_version_by_alias(name, "champion")
    assert version.version == "2" and version.tags[promote_module.TAG_GATE] == "passed"
    assert "vs champion: v1 CoMoL r=4 N=4" in version.description

    assert main(argv) == 1  # sweep A's best (0.62) below the champion (0.71): refused
    assert "vs champion: v2 CoMoL r=8 N=4" in capsys.readouterr().out
    assert client.get_model_version_by_alias(name, "champion").version == "2"
