"""What MLflow's UI shows of a sweep, read the way the UI reads it: through the REST API of a real server."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request

import numpy as np
import pytest

from orchestration.tracking import schema


def rest(server_uri: str, endpoint: str, body: dict | None = None, **query: str) -> dict:
    url = f"{server_uri}/api/2.0/mlflow/{endpoint}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def artifact_text(server_uri: str, run_id: str, path: str) -> str:
    query = urllib.parse.urlencode({"run_id": run_id, "path": path})
    with urllib.request.urlopen(f"{server_uri}/get-artifact?{query}", timeout=30) as response:
        return response.read().decode()


def by_key(entries: list[dict]) -> dict[str, object]:
    return {e["key"]: e["value"] for e in entries}


def test_the_experiment_opens_on_its_runs(sweep_a, mlflow_server):
    experiment = rest(
        mlflow_server.uri, "experiments/get-by-name", experiment_name=schema.experiment_name(sweep_a.name)
    )
    tags = by_key(experiment["experiment"]["tags"])
    assert tags[schema.EXPERIMENT_KIND] == "custom_model_development"  # MLflow's "machine learning" kind


def test_the_parent_run_carries_each_configurations_seed_statistics(sweep_a, mlflow_server):
    parent = rest(mlflow_server.uri, "runs/get", run_id=sweep_a.parent_run_id)["run"]
    metrics = by_key(parent["data"]["metrics"])
    table = json.loads(artifact_text(mlflow_server.uri, sweep_a.parent_run_id, schema.CONFIGURATIONS_TABLE))
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert len(rows) == len(sweep_a.trials)
    by_config: dict[str, list[float]] = {}
    for run in sweep_a.runs:
        by_config.setdefault(run.config_id, []).append(run.metrics[schema.METRIC_AVERAGE])
    assert {r["config_id"] for r in rows} == set(by_config)
    for row in rows:
        values = by_config[row["config_id"]]
        mean_key = schema.seed_stat_metric("seed_mean", row["label"], schema.METRIC_AVERAGE)
        std_key = schema.seed_stat_metric("seed_std", row["label"], schema.METRIC_AVERAGE)
        assert metrics[mean_key] == pytest.approx(np.mean(values))
        assert metrics[std_key] == pytest.approx(np.std(values, ddof=1))
    assert "seed_mean/CoMoL r_4 N_4/eval/average" in metrics  # what the UI's chart and column are called


def test_trial_runs_carry_their_configuration_label(sweep_a, mlflow_server):
    experiment = rest(
        mlflow_server.uri, "experiments/get-by-name", experiment_name=schema.experiment_name(sweep_a.name)
    )
    found = rest(
        mlflow_server.uri,
        "runs/search",
        {
            "experiment_ids": [experiment["experiment"]["experiment_id"]],
            "filter": f"tags.{schema.CONFIG_LABEL} = 'CoMoL r=4 N=4'",
        },
    )["runs"]
    expected = {r.run_id for r in sweep_a.runs if r.method == "comol" and r.adapter == {"r": 4, "num_experts": 4}}
    assert {r["info"]["run_id"] for r in found} == expected and len(expected) == 3


def test_the_report_is_on_the_parent_run(sweep_a, mlflow_server, tmp_path):
    from orchestration.report import run_report

    output = run_report(sweep_a.name, tracking_uri=mlflow_server.uri, out=tmp_path / "report")
    listed = rest(mlflow_server.uri, "artifacts/list", run_id=sweep_a.parent_run_id, path=schema.REPORT_DIR)
    names = {f["path"].rsplit("/", 1)[-1] for f in listed["files"]}
    written = {p.name for p in output.files if p.parent == output.directory}
    assert written and written <= names and any(n.endswith(".md") for n in names)
