"""The real MLflow server fixture works end to end: create, log, read back over HTTP."""

from __future__ import annotations

from orchestration.tracking import schema


def test_log_and_read_back(mlflow_server, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri)
    experiment = client.create_experiment(schema.experiment_name("fixture-check"))
    run = client.create_run(experiment, tags={schema.ROLE: schema.ROLE_TRIAL})
    client.log_metric(run.info.run_id, "eval/average", 0.5)
    (tmp_path / "a.txt").write_text("hello")
    client.log_artifact(run.info.run_id, str(tmp_path / "a.txt"))
    client.set_terminated(run.info.run_id)
    fetched = client.get_run(run.info.run_id)
    assert fetched.data.metrics["eval/average"] == 0.5
    assert fetched.data.tags[schema.ROLE] == schema.ROLE_TRIAL
    assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["a.txt"]


def test_config_id_ignores_seed_only():
    a = {"adapter": {"r": 8}, "seed": 0, "optim": {"lr": 1e-4}}
    b = {"adapter": {"r": 8}, "seed": 1, "optim": {"lr": 1e-4}}
    c = {"adapter": {"r": 16}, "seed": 0, "optim": {"lr": 1e-4}}
    assert schema.config_id(a) == schema.config_id(b) != schema.config_id(c)
    assert schema.flatten(a) == {"adapter.r": "8", "seed": "0", "optim.lr": "0.0001"}
