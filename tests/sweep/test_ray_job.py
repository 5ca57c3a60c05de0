"""``ray job submit --working-dir . -- comol sweep SPEC`` against a ``ray start --head`` cluster of our own: the
real trial path (a Ray Train V2 TorchTrainer with FSDP2 on 2 CPU workers, then the evaluation hook) completes
and lands in MLflow. Only the cluster this test started is stopped, by its own process group and temp dir."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from servers import free_port
from sweep_helpers import grid_spec, kill_tree, ray_env, write_spec

from orchestration.tracking import schema
from orchestration.tracking.queries import search_all

REPO = Path(__file__).resolve().parents[2]
MATH_DATA = REPO.parent / "shared" / "data" / "math"


@pytest.mark.slow
def test_ray_job_submit_runs_a_real_trial(mlflow_server, tiny_model_dir, tmp_path):
    from mlflow import MlflowClient

    spec = grid_spec("job-submit", tiny_model_dir, entry="train", seeds=[0], metric="eval/average")
    spec["train"].update(
        data={"source": "arithmetic", "size": 16, "cutoff_len": 320, "labels": "response"},
        training={"max_steps": 2, "batch_size": 4, "lr": 1e-3, "warmup_steps": 0},
        resources={"num_workers": 2, "cpus_per_worker": 1, "start_timeout_s": 120},
        evaluation={
            "hook": "orchestration.evaluation.benchmarks:training_hook",
            "options": {"math": ["addsub"], "limit": 2, "max_new_tokens": 4, "data_dir": str(MATH_DATA)},
        },
    )
    spec["search"] = {"grid": {"variants": [{"method": "comol", "experts": 2, "core_routing": False}], "rank": [2]}}
    path = write_spec(tmp_path / "spec.yaml", spec)
    out = tmp_path / "sweep"

    temp_dir = tempfile.mkdtemp(prefix="crj", dir="/tmp")
    dashboard = free_port()
    env = ray_env()
    head = subprocess.run(
        [
            "ray", "start", "--head", "--num-cpus=2", f"--port={free_port()}", "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard}", "--disable-usage-stats", f"--temp-dir={temp_dir}",
        ],
        capture_output=True, text=True, env=env, timeout=120, start_new_session=True,
    )  # fmt: skip
    head_pgid = None
    try:
        assert head.returncode == 0, head.stdout + head.stderr
        head_pgid = _pgid_of(temp_dir)
        submit = [
            "ray", "job", "submit", f"--address=http://127.0.0.1:{dashboard}", f"--working-dir={REPO}", "--",
            "comol", "sweep", str(path), "--tracking-uri", mlflow_server.uri, "--output-dir", str(out),
        ]  # fmt: skip
        deadline = time.monotonic() + 90
        while True:  # the head's job agent registers a little after `ray start` returns; no job exists until then
            job = subprocess.run(submit, capture_output=True, text=True, env=env, timeout=420, cwd=REPO)
            if "No available agent to submit job" not in job.stderr or time.monotonic() > deadline:
                break
            time.sleep(2)
        logs = job.stdout[-4000:] + job.stderr[-2000:]
        assert job.returncode == 0, logs
        assert "succeeded" in job.stdout.lower(), logs
        assert "sweep job-submit complete: 1/1 trials finished" in job.stdout, logs
        assert f"MLflow tracking URI: {mlflow_server.uri}" in job.stdout, logs
        assert "│ Base model" in job.stdout, logs  # the reference row of the summary
    finally:
        kill_tree(head_pgid, temp_dir)

    client = MlflowClient(mlflow_server.uri)
    eid = client.get_experiment_by_name(schema.experiment_name("job-submit")).experiment_id
    runs = search_all(client, eid, f"tags.`{schema.ROLE}` = '{schema.ROLE_TRIAL}'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.params["adapter.core_routing"] == "False" and run.data.params["resources.num_workers"] == "2"
    steps = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in steps] == [1, 2]  # per-step metrics from rank 0, logged by the trial driver
    metrics = run.data.metrics
    assert {"eval/average", "eval/addsub/accuracy", schema.METRIC_TRAINABLE, schema.METRIC_FLOPS} <= set(metrics)
    # Where the trial's time went: start-up (trial start → first step, in parts) and evaluation, within training
    parts = {f"time/startup/{p}_s" for p in ("workers", "imports", "dispatch", "tokenizer", "data", "model")}
    assert parts | {"time/startup/optimizer_s", "time/startup_s", "time/eval_s"} <= set(metrics), sorted(metrics)
    assert all(metrics[p] >= 0 for p in parts) and not any(k.startswith("clock/") for k in metrics)
    assert sum(metrics[p] for p in parts) <= metrics["time/startup_s"] < metrics["time/trial_s"]
    assert 0 < metrics["time/eval_s"] < metrics[schema.METRIC_TRAIN_TIME]
    assert 0 < metrics["time/steps_s"] < metrics[schema.METRIC_TRAIN_TIME] - metrics["time/startup/model_s"]
    files = {f.path for f in client.list_artifacts(run.info.run_id, "adapter")}
    # the adapter in PEFT layout and the prompt template it was trained with (for evaluation and comol generate)
    assert files == {"adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/prompt_template.json"}
    generations = client.download_artifacts(run.info.run_id, "generations/addsub.jsonl", str(tmp_path / "gen"))
    records = [json.loads(line) for line in Path(generations).read_text().splitlines()]
    assert len(records) == 2 and all("output" in r and "correct" in r for r in records)

    # The untrained model, evaluated once by the same hook on the same workers: one FINISHED base run
    (base,) = search_all(client, eid, f"tags.`{schema.ROLE}` = '{schema.ROLE_BASE}'")
    assert (
        base.info.status == "FINISHED" and base.data.tags[schema.PARENT_RUN_ID] == run.data.tags[schema.PARENT_RUN_ID]
    )
    assert {"eval/average", "eval/addsub/accuracy", "time/eval_s"} <= set(base.data.metrics)
    base_generations = client.download_artifacts(base.info.run_id, "generations/addsub.jsonl", str(tmp_path / "bg"))
    assert len(Path(base_generations).read_text().splitlines()) == 2


def _pgid_of(temp_dir: str) -> int | None:
    """The process group of the head's daemons (``ray start`` exits; its children keep its group)."""
    import os

    from servers import processes_using

    for pid in processes_using(temp_dir):
        try:
            return os.getpgid(pid)
        except ProcessLookupError:
            continue
    return None
