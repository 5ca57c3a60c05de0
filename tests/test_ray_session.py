"""``connect_ray`` as ``comol train`` / ``comol sweep`` use it: a private local Ray, quiet unless verbose,
gone after close unless its logs are kept for a failure. Each case runs in a fresh interpreter, as the CLI does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = """
import os, sys, time
import ray
from orchestration.ray_session import connect_ray

session = connect_ray(verbose={verbose})
assert session.started_here and session.temp_dir.startswith("/tmp/")

@ray.remote
def shout():
    print("WORKER-SAYS-HI", flush=True)
    return os.getpid()

assert ray.get(shout.remote()) != os.getpid()
time.sleep(2)  # the log monitor forwards worker output about once a second
kept = session.close(keep_logs={keep})
print("TEMP", session.temp_dir, "EXISTS", os.path.isdir(session.temp_dir), "KEPT", kept, flush=True)
"""


def run_script(verbose: bool, keep: bool) -> str:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "token"  # pinned before Ray is imported (see platform notes)
    code = SCRIPT.format(verbose=verbose, keep=keep)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_quiet_local_ray_is_removed_on_close():
    out = run_script(verbose=False, keep=False)
    assert "WORKER-SAYS-HI" not in out
    assert "EXISTS False KEPT None" in out


def test_verbose_streams_worker_logs_and_failures_keep_them():
    out = run_script(verbose=True, keep=True)
    assert "WORKER-SAYS-HI" in out
    temp = out.split("TEMP ", 1)[1].split()[0]
    try:
        assert f"EXISTS True KEPT {temp}/session_latest/logs" in out
        logs = Path(temp) / "session_latest" / "logs"
        assert any("WORKER-SAYS-HI" in p.read_text(errors="replace") for p in logs.glob("worker-*.out"))
    finally:
        shutil.rmtree(temp, ignore_errors=True)
