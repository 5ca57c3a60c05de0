"""Kill the ``comol sweep`` driver (SIGKILL) mid-sweep, resume it: still exactly 8 child runs, no finished trial
trained twice, and the trial that was in flight reopens its own run instead of creating a second one."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sweep_helpers import grid_spec, kill_tree, ray_env, write_spec

from orchestration.tracking import schema
from orchestration.tracking.queries import search_all
from orchestration.tracking.writer import ATTEMPTS

COMOL = [sys.executable, "-m", "orchestration.cli", "sweep"]


def _events(sweep_dir: Path) -> list[dict]:
    path = sweep_dir / "attempts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


@pytest.mark.slow
def test_sigkill_driver_then_resume(mlflow_server, tiny_model_dir, tmp_path):
    from mlflow import MlflowClient

    spec = grid_spec("kill-resume", tiny_model_dir, resources={"max_concurrent_trials": 1})
    spec["train"]["training"]["max_steps"] = 40  # a trial lasts a few seconds: the kill lands inside one
    path = write_spec(tmp_path / "spec.yaml", spec)
    out = tmp_path / "sweep"
    temp_dir = tempfile.mkdtemp(prefix="crk", dir="/tmp")
    args = [*COMOL, str(path), "--tracking-uri", mlflow_server.uri, "--output-dir", str(out)]
    log = open(tmp_path / "first.log", "wb")  # noqa: SIM115 - closed below
    driver = subprocess.Popen(
        [*args, "--ray-temp-dir", temp_dir], stdout=log, stderr=subprocess.STDOUT, env=ray_env(), start_new_session=True
    )
    try:
        # Wait until 3 trials finished and a 4th has started, then kill the driver without warning.
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            events = _events(out)
            finished = [e["trial"] for e in events if e["event"] == "finish"]
            if len(finished) >= 3 and events[-1]["event"] == "start":
                break
            assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.05)
        else:
            pytest.fail("the sweep did not get 3 trials done in time:\n" + (tmp_path / "first.log").read_text()[-3000:])
        driver.kill()
        driver.wait(timeout=30)
    finally:
        log.close()
        kill_tree(driver.pid, temp_dir)  # its local Ray (same process group, and our own temp dir)
    in_flight = events[-1]["trial"]
    done_before = set(finished)
    assert in_flight not in done_before

    client = MlflowClient(mlflow_server.uri)
    eid = client.get_experiment_by_name(schema.experiment_name("kill-resume")).experiment_id
    trials = f"tags.`{schema.ROLE}` = '{schema.ROLE_TRIAL}'"
    before = {r.info.run_id: r for r in search_all(client, eid, trials)}
    assert sum(r.info.status == "FINISHED" for r in before.values()) >= 3

    resume_dir = tempfile.mkdtemp(prefix="crk", dir="/tmp")
    try:
        second = subprocess.run(
            [*args, "--resume", "--ray-temp-dir", resume_dir],
            capture_output=True,
            text=True,
            env=ray_env(),
            timeout=400,
            start_new_session=True,
        )
    finally:
        kill_tree(None, resume_dir)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "already finished in MLflow" in second.stdout
    assert f"MLflow tracking URI: {mlflow_server.uri}" in second.stdout

    after = search_all(client, eid, trials)
    assert len(after) == 8 and all(r.info.status == "FINISHED" for r in after)
    identities = {(r.data.tags[schema.CONFIG_ID], r.data.tags[schema.SEED]) for r in after}
    assert len(identities) == 8
    assert set(before) <= {r.info.run_id for r in after}  # every run made before the kill was reopened, not copied

    events = _events(out)
    starts: dict[str, int] = {}
    finishes: dict[str, int] = {}
    for event in events:
        counter = starts if event["event"] == "start" else finishes
        counter[event["trial"]] = counter.get(event["trial"], 0) + 1
    assert len(finishes) == 8 and set(finishes.values()) == {1}  # every trial trained to the end exactly once
    for trial in done_before:
        assert starts[trial] == 1, trial  # finished before the kill: never started again
    by_key = {f"{r.data.tags[schema.CONFIG_ID]}-s{r.data.tags[schema.SEED]}": r for r in after}
    assert starts[in_flight] == 2  # killed mid-training, trained again on resume ...
    assert by_key[in_flight].data.tags[ATTEMPTS] == "2"  # ... in the same run, which counted both attempts
    assert all(by_key[t].data.tags[ATTEMPTS] == "1" for t in done_before)
