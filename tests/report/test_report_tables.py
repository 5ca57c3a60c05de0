"""``comol report`` against a real MLflow server: numbers, significance, marks, warnings, artifacts, errors."""

from __future__ import annotations

import math
import statistics
import uuid

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from orchestration.cli import main
from orchestration.report import run_report
from orchestration.report.render import terminal_text
from orchestration.tracking import schema

BENCH_METRICS = [schema.accuracy_metric(b) for b in ("addsub", "gsm8k", "svamp")] + [schema.METRIC_AVERAGE]


@pytest.fixture(scope="module")
def report_a(sweep_a, mlflow_server, tmp_path_factory):
    return run_report(sweep_a.name, mlflow_server.uri, tmp_path_factory.mktemp("report-a"))


def finished_values(uri: str, sweep: str) -> dict[str, dict[str, list[float]]]:
    """Hand computation's input, read back from the server: config_id → metric → values by seed."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(schema.experiment_name(sweep))
    runs = client.search_runs([experiment.experiment_id], f"tags.`{schema.ROLE}` = 'trial'", max_results=500)
    out: dict[str, dict[str, list[float]]] = {}
    for run in sorted(runs, key=lambda r: int(r.data.tags[schema.SEED])):
        if run.info.status != "FINISHED":
            continue
        per_metric = out.setdefault(run.data.tags[schema.CONFIG_ID], {})
        for metric in [*BENCH_METRICS, schema.METRIC_TRAINABLE, schema.METRIC_TRAIN_TIME]:
            per_metric.setdefault(metric, []).append(run.data.metrics[metric])
    return out


def test_numbers_equal_a_hand_computation(report_a, sweep_a, mlflow_server):
    values = finished_values(mlflow_server.uri, sweep_a.name)
    report = report_a.report
    table = report.table
    assert set(table.index) == set(values) and len(values) == 6
    csv = pd.read_csv(report_a.directory / "report.csv", index_col="config_id")
    titles = {
        schema.accuracy_metric("addsub"): "AddSub",
        schema.accuracy_metric("gsm8k"): "GSM8K",
        schema.accuracy_metric("svamp"): "SVAMP",
        schema.METRIC_AVERAGE: "Average",
    }
    for cid, per_metric in values.items():
        assert table.at[cid, "seeds"] == 3  # the FAILED run with 0.99 is left out
        for metric in BENCH_METRICS:
            seeds = per_metric[metric]
            mean, std = sum(seeds) / len(seeds), statistics.stdev(seeds)  # stdev: the sample (n − 1) std
            assert table.at[cid, f"{metric} mean"] == pytest.approx(mean, rel=1e-12)
            assert table.at[cid, f"{metric} std"] == pytest.approx(std, rel=1e-9)
            assert csv.at[cid, f"{titles[metric]} mean"] == pytest.approx(mean, rel=1e-12)
            assert csv.at[cid, f"{titles[metric]} std (ddof=1)"] == pytest.approx(std, rel=1e-9)
        assert table.at[cid, "params"] == per_metric[schema.METRIC_TRAINABLE][0]
        assert table.at[cid, "train_s"] == pytest.approx(np.mean(per_metric[schema.METRIC_TRAIN_TIME]))

    averages = {cid: np.mean(v[schema.METRIC_AVERAGE]) for cid, v in values.items()}
    best = max(averages, key=averages.get)
    assert report.best == best and table.at[best, "label"] == "CoMoL r=4 N=4"
    lora = [cid for cid in values if table.at[cid, "method"] == "lora"]
    reference = max(lora, key=averages.get)  # the default reference: LoRA, its best row
    assert report.reference == reference and table.at[reference, "label"] == "LoRA r=4"

    sig = report.significance
    for cid, per_metric in values.items():
        mine = per_metric[schema.METRIC_AVERAGE]
        for other, prefix in ((best, "vs best"), (reference, "vs reference")):
            if cid == other:
                assert math.isnan(sig.at[cid, f"{prefix} p"])
                continue
            theirs = values[other][schema.METRIC_AVERAGE]
            expected = stats.ttest_ind(mine, theirs, equal_var=False).pvalue
            assert sig.at[cid, f"{prefix} p"] == pytest.approx(expected, rel=1e-12)
            diff = np.mean(mine) - np.mean(theirs)
            assert sig.at[cid, f"{prefix} diff"] == pytest.approx(diff)
            low, high = sig.at[cid, f"{prefix} ci_low"], sig.at[cid, f"{prefix} ci_high"]
            interval = stats.ttest_ind(mine, theirs, equal_var=False).confidence_interval(0.95)
            assert (low, high) == pytest.approx((interval.low, interval.high), rel=1e-12)  # Welch's t-interval
            assert (low > 0 or high < 0) == (expected < 0.05)  # the printed interval agrees with p
            assert csv.at[cid, f"Average {prefix} p (Welch)"] == pytest.approx(expected, rel=1e-12)


def test_marks_best_second_and_significant_gaps(report_a, sweep_a, mlflow_server):
    values = finished_values(mlflow_server.uri, sweep_a.name)
    report = report_a.report
    markdown = (report_a.directory / "report.md").read_text()
    assert "mean ± sample standard deviation (ddof = 1)" in markdown
    rows = {
        line.split(" | ")[0].removeprefix("| "): line.split(" | ")
        for line in markdown.splitlines()
        if line.startswith("| ") and " | 3 | " in line
    }
    assert len(rows) == 6
    for column, metric in enumerate(BENCH_METRICS, start=2):
        means = {cid: np.mean(v[metric]) for cid, v in values.items()}
        ranked = sorted(means, key=means.get, reverse=True)
        for cid in values:
            cell = rows[report.table.at[cid, "label"]][column]
            assert cell.startswith("**") == (cid == ranked[0]), (metric, cell)
            assert cell.startswith("<u>") == (cid == ranked[1]), (metric, cell)
            ids = list(values)  # † needs Holm's p over every pair of rows: the best was picked post hoc
            pairs = [(i, j) for n, i in enumerate(ids) for j in ids[n + 1 :]]
            raw = [stats.ttest_ind(values[i][metric], values[j][metric], equal_var=False).pvalue for i, j in pairs]
            adjusted = dict(zip(pairs, multipletests(raw, method="holm")[1], strict=True))
            p = adjusted.get((cid, ranked[0]), adjusted.get((ranked[0], cid)))
            assert cell.endswith("†") == (cid != ranked[0] and p < 0.05), (metric, cell, p)
    latex = (report_a.directory / "report.tex").read_text()
    assert r"\textbf{" in latex and r"\underline{" in latex and r"\toprule" in latex
    assert "Avg. & Params" in latex
    text = terminal_text(report)
    for label in report.table["label"]:
        assert label in text
    assert "ddof = 1" in text and "WARNING" not in text  # three seeds everywhere: no warning


def test_report_files_and_plots_are_logged_on_the_parent_run(report_a, sweep_a, mlflow_server, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    assert report_a.logged_to == sweep_a.parent_run_id
    logged = {f.path for f in client.list_artifacts(sweep_a.parent_run_id, schema.REPORT_DIR)}
    assert {"report/report.md", "report/report.csv", "report/report.tex", "report/plots"} <= logged
    plots = {f.path for f in client.list_artifacts(sweep_a.parent_run_id, "report/plots")}
    names = {"accuracy_vs_rank.png", "accuracy_vs_experts.png", "accuracy_vs_params.png"}
    assert plots == {f"report/plots/{n}" for n in names}
    assert not report_a.skipped
    local = client.download_artifacts(sweep_a.parent_run_id, "report/plots/accuracy_vs_params.png", str(tmp_path))
    with open(local, "rb") as handle:
        data = handle.read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_cli_report_prints_the_table(sweep_a, mlflow_server, tmp_path, capsys):
    rc = main(["report", sweep_a.name, "--tracking-uri", mlflow_server.uri, "--out", str(tmp_path), "--no-log"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "CoMoL w/o CR r=4 N=4" in out and "LoRA r=8" in out and "Significance vs best" in out
    assert "sample standard deviation (ddof = 1)" in out and "Δ vs LoRA r=4" in out
    assert "95% CI (Welch t)" in out and "bootstrap" not in out
    assert "1 trial run(s) not FINISHED" in out
    assert (tmp_path / "report.md").is_file() and (tmp_path / "plots" / "accuracy_vs_rank.png").is_file()


def test_fewer_than_three_seeds_warns_and_plots_without_variation_are_skipped(sweep_b, mlflow_server, tmp_path):
    output = run_report(sweep_b.name, mlflow_server.uri, tmp_path, reference="LoRA r=4")
    text = terminal_text(output.report)
    markdown = (tmp_path / "report.md").read_text()
    assert "WARNING: fewer than 3 seeds" in text and "(n=2)" in text
    assert "**⚠ Warning:** fewer than 3 seeds" in markdown
    assert output.skipped == [
        "plot accuracy_vs_experts.png skipped: the sweep has fewer than two expert counts (CoMoL)"
    ]
    assert "accuracy_vs_experts.png skipped" in markdown and "accuracy_vs_experts.png skipped" in text
    assert sorted(p.name for p in output.plots) == ["accuracy_vs_params.png", "accuracy_vs_rank.png"]


def test_bad_input_fails_clearly_and_records_nothing(sweep_a, sweep_b, mlflow_server, tmp_path, capsys):
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    before = [f.path for f in client.list_artifacts(sweep_b.parent_run_id)]

    assert main(["report", "no-such-sweep", "--tracking-uri", mlflow_server.uri, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "no sweep 'no-such-sweep'" in err and sweep_a.name in err  # names it and lists the real ones

    argv = [
        "report",
        sweep_b.name,
        "--tracking-uri",
        mlflow_server.uri,
        "--reference",
        "molora",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 2
    assert "reference: no configuration 'molora'" in capsys.readouterr().err

    # a sweep whose only trial is still running: no finished runs
    name = f"report-test-running-{uuid.uuid4().hex[:6]}"
    eid = client.create_experiment(schema.experiment_name(name))
    parent = client.create_run(eid, tags={schema.ROLE: schema.ROLE_SWEEP, schema.SWEEP: name}).info.run_id
    client.create_run(
        eid,
        tags={
            schema.ROLE: schema.ROLE_TRIAL,
            schema.SWEEP: name,
            schema.CONFIG_ID: "x",
            schema.SEED: "0",
            schema.PARENT_RUN_ID: parent,
        },
    )
    assert main(["report", name, "--tracking-uri", mlflow_server.uri, "--out", str(tmp_path / "y")]) == 2
    assert f"sweep {name!r} has no finished trial runs" in capsys.readouterr().err
    assert client.list_artifacts(parent) == []

    missing = tmp_path / "nope.db"
    assert main(["report", sweep_a.name, "--tracking-uri", f"sqlite:///{missing}"]) == 2
    assert "no MLflow store" in capsys.readouterr().err and not missing.exists()

    assert [f.path for f in client.list_artifacts(sweep_b.parent_run_id)] == before
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_columns_read_the_writers_metric_spelling_and_the_pareto_front_is_undominated():
    from orchestration.report.aggregate import benchmark_columns
    from orchestration.report.plots import pareto_front

    names = {"eval/humaneval/pass_at_10", "eval/humaneval/pass_at_1", "eval/gsm8k/accuracy", "eval/AQuA/accuracy"}
    columns = benchmark_columns(names | {"eval/addsub/accuracy", "train/loss"})
    titles = [c.title for c in columns]
    assert titles == ["AddSub", "AQuA", "GSM8K", "HumanEval pass@1", "HumanEval pass@10", "Average"]
    assert columns[-1].computed  # no eval/average logged: the paper's unweighted mean of the accuracies

    points = pd.DataFrame({"params": [1, 2, 2, 3, 4], "acc": [0.5, 0.4, 0.6, 0.6, 0.7]}, index=list("abcde"))
    assert pareto_front(points, "params", "acc") == ["a", "c", "e"]  # b and d are beaten by cheaper or better rows
