"""The cluster without Docker, end to end: the roles of docker-compose.yml as real processes on this machine.

PostgreSQL (the dev extras' server binaries) → ``docker/mlflow-entrypoint.sh`` (MLflow, basic auth, PostgreSQL
backend, proxied artifacts) → ``docker/mlflow_create_user.py`` (the non-admin account jobs use) → a Ray
head holding no CPU and a worker node, each given the environment compose gives its nodes (tracking URI and
account, COMOL_STORAGE_PATH, token auth) → ``ray job submit --working-dir <repo> -- comol sweep`` of the
sweep tests' tiny-model smoke grid → ``comol report`` → ``comol promote``. Everything is checked through
the authenticated MLflow API; unauthenticated clients must be refused by MLflow and by Ray's dashboard.
Only what this module started is stopped (its process groups, its temp dirs).
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import io
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cluster_servers import (
    REPO,
    VENV_BIN,
    AuthMlflow,
    RayCluster,
    base_env,
    launch_auth_mlflow,
    start_postgres,
    start_ray_cluster,
)
from tiny_models import save_tiny_model

from orchestration.tracking import schema

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # servers, a job, report and promote

SEEDS = [0, 1]
VARIANTS = [{"method": "lora"}, {"method": "comol", "experts": 2}]
SWEEP_USER = "comol-sweep"


def _sweep_helpers() -> Any:
    """tests/sweep/sweep_helpers.py under a unique module name (the tiny model and spec the sweep tests use)."""
    path = REPO / "tests" / "sweep" / "sweep_helpers.py"
    spec = importlib.util.spec_from_file_location("comol_cluster_sweep_helpers", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Stack:
    mlflow: AuthMlflow
    ray: RayCluster
    sweep_password: str
    storage: Path
    root: Path

    @property
    def sweep_account(self) -> dict[str, str]:
        return {
            "MLFLOW_TRACKING_URI": self.mlflow.uri,
            "MLFLOW_TRACKING_USERNAME": SWEEP_USER,
            "MLFLOW_TRACKING_PASSWORD": self.sweep_password,
        }


@dataclass
class Outcome:
    name: str
    model_name: str
    job: subprocess.CompletedProcess
    report: subprocess.CompletedProcess
    promote: subprocess.CompletedProcess
    seconds: dict[str, float]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    import secrets

    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="cml", dir="/tmp"))
    postgres = start_postgres()
    mlflow = ray = None
    try:
        mlflow = launch_auth_mlflow(postgres, root / "mlflow")  # migrates its database while Ray starts
        password = secrets.token_urlsafe(18)
        storage = root / "storage"  # stands in for s3://ray-results: a folder every node of this machine sees
        node_env = {
            "MLFLOW_TRACKING_URI": mlflow.uri,
            "MLFLOW_TRACKING_USERNAME": SWEEP_USER,
            "MLFLOW_TRACKING_PASSWORD": password,
            "COMOL_STORAGE_PATH": str(storage),
            "HF_HUB_OFFLINE": "1",
        }
        ray = start_ray_cluster(node_env, worker_cpus=2)
        mlflow.wait()
        assert mlflow.create_user(SWEEP_USER, password) == "created"
        print(f"stack up in {time.monotonic() - started:.0f} s")
        yield Stack(mlflow, ray, password, storage, root)
    finally:
        if ray is not None:
            ray.stop()
        if mlflow is not None:
            mlflow.stop()
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def outcome(stack: Stack) -> Outcome:
    """Submit the sweep as a Ray job, then report and promote it from a user's shell (the sweep account)."""
    helpers = _sweep_helpers()
    work = stack.root / "work"
    work.mkdir()
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    model = save_tiny_model(work / "tiny")
    spec = helpers.grid_spec(name, model, seeds=SEEDS, search={"grid": {"variants": VARIANTS, "rank": [2]}})
    spec_path = helpers.write_spec(work / "spec.yaml", spec)
    seconds: dict[str, float] = {}

    started = time.monotonic()
    job = subprocess.run(
        [str(VENV_BIN / "ray"), "job", "submit", f"--address={stack.ray.dashboard}", f"--working-dir={REPO}",
         "--", "comol", "sweep", str(spec_path), "--output-dir", str(work / "sweep")],
        env=stack.ray.client_env(), cwd=REPO, capture_output=True, text=True, timeout=420,
    )  # fmt: skip
    seconds["job"] = time.monotonic() - started
    assert job.returncode == 0, job.stdout[-5000:] + job.stderr[-3000:]

    user_env = base_env(**stack.sweep_account)
    model_name = f"comol-e2e-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    report = subprocess.run(
        [str(VENV_BIN / "comol"), "report", name, "--out", str(work / "report")],
        env=user_env, cwd=work, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    seconds["report"] = time.monotonic() - started
    assert report.returncode == 0, report.stdout[-4000:] + report.stderr[-4000:]
    started = time.monotonic()
    promote = subprocess.run(
        [str(VENV_BIN / "comol"), "promote", name, "--model-name", model_name, "--force"],  # a smoke grid: noise
        env=user_env, cwd=work, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    seconds["promote"] = time.monotonic() - started
    assert promote.returncode == 0, promote.stdout[-4000:] + promote.stderr[-4000:]
    print(f"job {seconds['job']:.0f} s, report {seconds['report']:.0f} s, promote {seconds['promote']:.0f} s")
    return Outcome(name, model_name, job, report, promote, seconds)


@pytest.fixture
def admin(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An MlflowClient authenticated as the admin (MLflow's client reads the credentials from the env)."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", stack.mlflow.admin[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", stack.mlflow.admin[1])
    return MlflowClient(tracking_uri=stack.mlflow.uri, registry_uri=stack.mlflow.uri)


def _trial_runs(client: Any, name: str) -> list[Any]:
    experiment = client.get_experiment_by_name(schema.experiment_name(name))
    assert experiment is not None, f"no experiment {schema.experiment_name(name)}"
    return client.search_runs(
        [experiment.experiment_id], f"tags.`{schema.ROLE}` = '{schema.ROLE_TRIAL}'", max_results=100
    )


def _parent_run(client: Any, name: str) -> Any:
    experiment = client.get_experiment_by_name(schema.experiment_name(name))
    parents = client.search_runs([experiment.experiment_id], f"tags.`{schema.ROLE}` = '{schema.ROLE_SWEEP}'")
    assert len(parents) == 1
    return parents[0]


def _http(url: str, auth: tuple[str, str] | None = None, method: str = "GET", body: Any = None,
          bearer: str | None = None) -> tuple[int, bytes]:  # fmt: skip
    """(status, body) of one request, with basic auth or a bearer token if given."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    if bearer is not None:
        request.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_job_ran_the_sweep_on_the_cluster_with_its_tracking_server(stack: Stack, outcome: Outcome) -> None:
    out = outcome.job.stdout
    assert "succeeded" in out.lower(), out[-3000:]
    planned = len(SEEDS) * len(VARIANTS)
    assert f"sweep {outcome.name} complete: {planned}/{planned} trials finished" in out, out[-3000:]
    # The job got the tracking server from its node's environment: the client passed no URI or credentials.
    assert f"MLflow tracking URI: {stack.mlflow.uri}" in out, out[-3000:]
    # Ray's storage_path is COMOL_STORAGE_PATH/<sweep>/tune: the Tune experiment state landed there.
    tune_dir = stack.storage / outcome.name / "tune"
    assert tune_dir.is_dir(), f"nothing under {stack.storage}: COMOL_STORAGE_PATH was not used"
    assert list(tune_dir.glob("*/experiment_state-*.json")), sorted(p.name for p in tune_dir.rglob("*"))[:20]


def test_every_trial_is_one_finished_run_with_its_tags(admin: Any, stack: Stack, outcome: Outcome) -> None:
    runs = _trial_runs(admin, outcome.name)
    assert len(runs) == len(SEEDS) * len(VARIANTS)
    parent = _parent_run(admin, outcome.name)
    assert parent.info.status == "FINISHED"
    # The jobs' account created the experiment, so it holds MANAGE there (others get the default, READ).
    from mlflow.server import get_app_client
    from mlflow.server.auth.permissions import RESOURCE_TYPE_EXPERIMENT

    auth = get_app_client("basic-auth", tracking_uri=stack.mlflow.uri)
    permission = auth.get_user_permission(SWEEP_USER, RESOURCE_TYPE_EXPERIMENT, parent.info.experiment_id)
    assert permission.permission == "MANAGE"
    keys = set()
    for run in runs:
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert tags[schema.SWEEP] == outcome.name
        assert tags[schema.PARENT_RUN_ID] == parent.info.run_id
        assert tags[schema.METHOD] in {"lora", "comol"}
        assert int(tags[schema.SEED]) in SEEDS
        assert run.data.params["adapter.r"] == "2"
        assert 0.0 <= run.data.metrics[schema.METRIC_AVERAGE] <= 1.0
        keys.add((tags[schema.CONFIG_ID], int(tags[schema.SEED])))
        adapter = {f.path for f in admin.list_artifacts(run.info.run_id, schema.ADAPTER_ARTIFACT)}
        assert adapter == {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"}
        # Proxied artifacts: the client uploaded through the server, which wrote into its destination.
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert len(keys) == len(runs)  # no (configuration, seed) twice
    assert {t.data.tags[schema.METHOD] for t in runs} == {"lora", "comol"}
    # Each trial's weights reached the server's store twice: its run's adapter/ folder and its MLflow Model.
    stored = list((stack.mlflow.root / "artifacts").rglob("adapter_model.safetensors"))
    in_models = [path for path in stored if "models" in path.relative_to(stack.mlflow.root).parts]
    assert len(stored) - len(in_models) == len(runs)
    assert len(in_models) == len(runs)


def test_report_is_logged_on_the_parent_run_with_the_runs_numbers(admin: Any, outcome: Outcome, tmp_path) -> None:
    parent = _parent_run(admin, outcome.name)
    logged = {f.path for f in admin.list_artifacts(parent.info.run_id, schema.REPORT_DIR)}
    assert {"report/report.md", "report/report.csv", "report/report.tex"} <= logged, logged
    assert f"logged as artifacts report/ of the sweep's parent run {parent.info.run_id}" in outcome.report.stdout
    path = admin.download_artifacts(parent.info.run_id, "report/report.csv", str(tmp_path))
    rows = {row["config_id"]: row for row in csv.DictReader(io.StringIO(Path(path).read_text()))}
    by_config: dict[str, list[float]] = {}
    for run in _trial_runs(admin, outcome.name):
        by_config.setdefault(run.data.tags[schema.CONFIG_ID], []).append(run.data.metrics[schema.METRIC_AVERAGE])
    assert set(rows) == set(by_config)
    for config_id, values in by_config.items():
        row = rows[config_id]
        assert int(row["seeds"]) == len(SEEDS)
        means = [float(v) for k, v in row.items() if k.endswith(" mean") and k != "train_s mean" and v != ""]
        assert any(abs(m - statistics.fmean(values)) < 1e-9 for m in means), (row, values)
    markdown = Path(admin.download_artifacts(parent.info.run_id, "report/report.md", str(tmp_path))).read_text()
    assert "lora" in markdown.lower() and "comol" in markdown.lower()


def test_champion_alias_points_at_the_best_configurations_median_seed(admin: Any, outcome: Outcome) -> None:
    version = admin.get_model_version_by_alias(outcome.model_name, "champion")
    runs = _trial_runs(admin, outcome.name)
    by_config: dict[str, list[Any]] = {}
    for run in runs:
        by_config.setdefault(run.data.tags[schema.CONFIG_ID], []).append(run)
    means = {cid: statistics.fmean(r.data.metrics[schema.METRIC_AVERAGE] for r in rs) for cid, rs in by_config.items()}
    best = max(means.values())
    winners = {cid for cid, mean in means.items() if mean == best}
    assert version.tags["comol.sweep"] == outcome.name
    assert version.tags["comol.config_id"] in winners
    assert abs(float(version.tags["comol.metric_mean"]) - best) < 1e-9
    assert version.run_id in {r.info.run_id for r in by_config[version.tags["comol.config_id"]]}
    assert f"alias champion → version {version.version}" in outcome.promote.stdout


def test_unauthenticated_clients_are_refused(stack: Stack, outcome: Outcome) -> None:
    experiment = f"{stack.mlflow.uri}/api/2.0/mlflow/experiments/get-by-name?experiment_name=" + (
        urllib.request.quote(schema.experiment_name(outcome.name))
    )
    assert _http(experiment)[0] == 401
    assert _http(experiment, auth=(SWEEP_USER, "wrong-password"))[0] == 401
    assert _http(experiment, auth=(SWEEP_USER, stack.sweep_password))[0] == 200
    # The jobs' account is not an admin: it cannot create users.
    create = f"{stack.mlflow.uri}/api/2.0/mlflow/users/create"
    status, _ = _http(create, (SWEEP_USER, stack.sweep_password), "POST", {"username": "x", "password": "y" * 12})
    assert status == 403
    # Ray's dashboard and job API want the cluster's token.
    jobs = f"{stack.ray.dashboard}/api/jobs/"
    assert _http(jobs)[0] == 401
    status, body = _http(jobs, bearer=stack.ray.token)
    assert status == 200 and any(job.get("status") == "SUCCEEDED" for job in json.loads(body))


def test_the_cluster_has_a_head_and_a_worker_node(stack: Stack, outcome: Outcome) -> None:
    """The head holds no CPU (as in compose), so every trial above ran on the worker node."""
    status, body = _http(f"{stack.ray.dashboard}/api/v0/nodes", bearer=stack.ray.token)
    assert status == 200, body[:500]
    nodes = json.loads(body)["data"]["result"]["result"]
    alive = [n for n in nodes if n["state"] == "ALIVE"]
    assert len(alive) == 2
    assert sorted(n["is_head_node"] for n in alive) == [False, True]
    cpus = {n["is_head_node"]: n["resources_total"].get("CPU", 0) for n in alive}
    assert cpus == {True: 0, False: 2}
