"""``benchmarks/sweep_scale.py`` at a tiny size, as it runs at hundreds of trials: PostgreSQL, an ``mlflow server`` on
it, a Ray cluster started with ``ray start`` (head + a worker node), the ``comol sweep`` / ``--resume`` / ``report``
CLIs as processes. Its figures must come from a record that holds every planned trial exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_the_scale_benchmark_records_every_trial_once_and_a_finished_resume_searches_its_runs_once(tmp_path):
    out = tmp_path / "figures.json"
    command = [sys.executable, str(REPO / "benchmarks" / "sweep_scale.py"), "--sizes", "6", "--worker-nodes", "1",
               "--cpus-per-worker", "2", "--mlflow-workers", "1", "--json", str(out)]  # fmt: skip
    ran = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    [size] = json.loads(out.read_text())
    assert size["trials"] == 6 and size["slots"] == 2
    assert size["record_ok"], size["record_note"]
    assert size["record_note"] == "6 runs: 0 duplicated, 0 lost, 0 unplanned, 0 not FINISHED"
    assert size["sweep_requests"]["runs/create"] == 6 + 1  # a run per trial and the parent: no race duplicated one
    assert size["compute_s"] > 0 and size["sweep_wall_s"] > size["compute_s"] / size["slots"]
    # a resume of a finished sweep creates nothing and searches its trial runs once (plus one parent look-up)
    assert "runs/create" not in size["resume_requests"] and size["resume_requests"]["runs/search"] == 2
    assert 0 < size["resume_planning_s"] < size["resume_wall_s"]
    assert size["report_requests"].get("artifacts PUT", 0) >= 3  # the report's files logged on the parent run
    assert "no run duplicated or lost" in ran.stdout and "meets: no run duplicated" in ran.stdout
