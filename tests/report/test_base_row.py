"""The untrained base model as the reference row: one evaluation per setting, reused across sweeps of a store, and
shown last in the report's tables and as a line in its plots (real MLflow server, the product's own writer)."""

from __future__ import annotations

import dataclasses
import io
import uuid

import numpy as np
import pandas as pd
import pytest
from matplotlib.pyplot import imread
from rich.console import Console
from sweep_record import SWEEP_B_TRIALS, write_sweep

from orchestration.report import build_report, load_sweep, run_report
from orchestration.report.plots import plot_params
from orchestration.report.render import terminal_text
from orchestration.sweep.base_row import base_plans, missing, record_base_rows
from orchestration.sweep.space import plan
from orchestration.sweep.spec import parse_spec
from orchestration.tracking import schema
from orchestration.tracking.writer import SweepTracker

EVALUATION = {
    "hook": "orchestration.evaluation.benchmarks:training_hook",
    "options": {"math": [], "arithmetic": {"size": 4}, "max_new_tokens": 8},
}
BASE_METRICS = {
    schema.accuracy_metric("addsub"): 0.05,
    schema.accuracy_metric("gsm8k"): 0.01,
    schema.accuracy_metric("svamp"): 0.03,
    schema.METRIC_AVERAGE: 0.03,
    "time/eval_s": 4.0,
}


def spec_dict(name: str, model: str, **overrides) -> dict:
    spec = {
        "name": name,
        "entry": "train",
        "seeds": [0, 1],
        "train": {
            "model": model,
            "data": {"source": "arithmetic", "size": 32, "seed": 0, "prompt_template": "short"},
            "training": {"lr": 1e-4, "batch_size": 4, "max_steps": 2},
            "resources": {"num_workers": 2},
            "evaluation": EVALUATION,
        },
        "search": {"grid": {"variants": [{"method": "lora"}, {"method": "comol", "num_experts": 2}]}},
    }
    return spec | overrides


def plans_of(spec: dict, tmp_path) -> list:
    return base_plans(plan(parse_spec(spec), str(tmp_path / "train")), str(tmp_path / "train"))


def test_one_base_evaluation_per_setting(tiny_base, tmp_path):
    """Seeds and adapters share one base evaluation; the prompt template or the workers make another; a sweep
    without evaluation, a smoke sweep and ``base_row: false`` have none."""
    model = str(tiny_base)
    (one,) = plans_of(spec_dict("s", model), tmp_path)
    assert one.settings["prompt_template"] == "short" and "generations_path" not in one.settings["evaluation"]
    assert one.config.evaluation.options.generations_path.startswith(str(tmp_path / "train"))
    alpaca = spec_dict("s", model)
    alpaca["train"]["data"] = {**alpaca["train"]["data"], "prompt_template": "alpaca"}
    one_worker = spec_dict("s", model)
    one_worker["train"]["resources"] = {"num_workers": 1}
    other_name = spec_dict("other-sweep", model)
    keys = {name: plans_of(s, tmp_path)[0].key for name, s in [("alpaca", alpaca), ("w1", one_worker)]}
    assert len({one.key, *keys.values()}) == 3
    assert plans_of(other_name, tmp_path)[0].key == one.key  # the key is the settings', not the sweep's
    per_seed_data = spec_dict("s", model)  # each seed draws its own training and held-out problems
    per_seed_data["train"]["data"] = {k: v for k, v in per_seed_data["train"]["data"].items() if k != "seed"}
    assert len(plans_of(per_seed_data, tmp_path)) == 2
    no_eval = spec_dict("s", model)
    no_eval["train"] = {k: v for k, v in no_eval["train"].items() if k != "evaluation"}
    for spec in (no_eval, spec_dict("s", model, entry="smoke"), spec_dict("s", model, base_row=False)):
        assert plans_of(spec, tmp_path) == []


def test_base_row_is_reused_by_a_later_sweep_with_the_same_settings(mlflow_server, tiny_base, tmp_path):
    model = str(tiny_base)
    first, second = (f"base-reuse-{uuid.uuid4().hex[:6]}-{i}" for i in range(2))
    trackers = []
    for name in (first, second):
        tracker = SweepTracker(mlflow_server.uri, name)
        tracker.ensure_experiment()
        tracker.ensure_parent({"name": name}, "grid", tracker.find_parent())
        trackers.append(tracker)
    (plan_1,) = plans_of(spec_dict(first, model), tmp_path)
    source = trackers[0].record_base(plan_1.key, model, plan_1.settings, BASE_METRICS)
    assert missing([plan_1], trackers[0]) == []  # a resumed first sweep evaluates nothing
    (plan_2,) = plans_of(spec_dict(second, model), tmp_path)
    assert missing([plan_2], trackers[1]) == [plan_2]
    record_base_rows([plan_2], trackers[1], Console(file=io.StringIO()), tmp_path)  # copies: no Ray needed
    copied = trackers[1].base_run(plan_2.key)
    assert copied is not None and copied.data.tags[schema.BASE_SOURCE] == source
    assert copied.data.tags[schema.PARENT_RUN_ID] == trackers[1].parent_run_id
    assert copied.data.metrics == pytest.approx(BASE_METRICS)
    assert copied.data.params["prompt_template"] == "short" and missing([plan_2], trackers[1]) == []


@pytest.fixture(scope="module")
def sweep_with_base(mlflow_server, tiny_base):
    name = f"report-base-{uuid.uuid4().hex[:8]}"
    write_sweep(mlflow_server.uri, name, tiny_base, SWEEP_B_TRIALS, extra_unfinished=False)
    tracker = SweepTracker(mlflow_server.uri, name)
    tracker.ensure_experiment()
    tracker.ensure_parent({"name": name}, "grid", tracker.find_parent())
    tracker.record_base("k1", str(tiny_base), {"prompt_template": "alpaca"}, BASE_METRICS)
    return name


def test_report_shows_the_base_model_last_and_outside_the_tests(sweep_with_base, mlflow_server, tmp_path):
    output = run_report(sweep_with_base, mlflow_server.uri, tmp_path / "report", log=False)
    report = output.report
    text = terminal_text(report)
    table_part, significance_part = text.split("Significance vs best", 1)
    base_line = next(line for line in table_part.splitlines() if "Base model (untrained)" in line)
    # addsub, gsm8k, svamp, Average in % (the table's columns), no seeds, no trainable parameters
    assert [c for c in base_line.replace("│", " ").split() if "." in c] == ["5.0", "1.0", "3.0", "3.0"]
    assert "Base model" not in significance_part and "untrained base model" in text  # caption says what it is
    rows = [line for line in table_part.splitlines() if line.startswith("│")]
    config_lines = [i for i, line in enumerate(rows) if "LoRA" in line or "CoMoL" in line]
    assert len(config_lines) == 2 and rows.index(base_line) > max(config_lines)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| *Base model (untrained)* | – | 5.0 | 1.0 | 3.0 | 3.0 | 0 | – | – |" in markdown
    csv = pd.read_csv(tmp_path / "report" / "report.csv", index_col=0)
    base = csv[csv["method"] == "base"]
    assert len(base) == 1 and base["Average mean"].iloc[0] == pytest.approx(0.03)
    assert (
        "\\textit{Base model (untrained)} & 5.0 & 1.0 & 3.0 & 3.0 & 0"
        in (tmp_path / "report" / "report.tex").read_text()
    )
    best = report.table[f"{schema.METRIC_AVERAGE} mean"].idxmax()
    assert report.best == best and "base" not in set(report.significance.index)


def test_plots_draw_the_base_model_line(sweep_with_base, mlflow_server, tmp_path):
    from mlflow import MlflowClient

    report = build_report(load_sweep(MlflowClient(mlflow_server.uri), sweep_with_base))
    assert report.base and report.base[0].values[schema.METRIC_AVERAGE] == pytest.approx(0.03)
    with_line = plot_params(report, tmp_path / "with.png")
    without = plot_params(dataclasses.replace(report, base=[]), tmp_path / "without.png")
    pixels = [np.round(imread(p)[..., :3] * 255).astype(int) for p in (with_line, without)]
    # the base line is drawn in red (tab:red, 214/39/40) across the axes: many such pixels with it, none without
    red = [int(((abs(p - [214, 39, 40]).sum(axis=2)) < 60).sum()) for p in pixels]
    assert red[0] > 300 and red[1] == 0, red
