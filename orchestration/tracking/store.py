"""Which MLflow store a command talks to, and the one client every writer and reader builds for it.

Every command resolves the tracking URI the same way: ``--tracking-uri``, then the spec's ``tracking.uri``
(sweeps), then ``$MLFLOW_TRACKING_URI``, then one default, a SQLite store in the working directory. Readers
(report, promote, generate) never create or change a store: opened with MLflow, a missing, empty or foreign SQLite
file would be given MLflow's tables (or migrated), so a reader first checks, read-only, that the file already is an
MLflow store. A tracking server that does not answer is an error within seconds, not after MLflow's minutes of
retries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from comol.errors import ConfigError

if TYPE_CHECKING:
    from mlflow import MlflowClient

TRACKING_SCHEMES = ("sqlite:///", "http://", "https://", "postgresql://", "mysql://", "file:", "databricks")
URI_ENV = "MLFLOW_TRACKING_URI"
DEFAULT_DESCRIPTION = f"${URI_ENV}, else sqlite:///<cwd>/mlflow.db"  # for --help texts


def default_tracking_uri() -> str:
    """The local store of a workstation: ``mlflow.db`` in the working directory, as an absolute SQLite URI."""
    return f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def resolve_tracking_uri(given: str | None = None, configured: str | None = None, *, read_only: bool = False) -> str:
    """``given`` (the command line), else ``configured`` (a spec), else ``$MLFLOW_TRACKING_URI``, else the default.

    ``read_only``: the store must exist already; a reader must not leave an empty SQLite file behind.
    """
    uri = given or configured or os.environ.get(URI_ENV) or default_tracking_uri()
    if not uri.startswith(TRACKING_SCHEMES):
        raise ConfigError("tracking-uri", f"{uri!r} is not a tracking URI", allowed=TRACKING_SCHEMES)
    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if read_only or (path.is_file() and path.stat().st_size > 0):  # a writer may only create a new file
            check_sqlite_store(uri)
    if read_only and uri.startswith("file:"):
        check_file_store(uri)
    if uri.startswith(("http://", "https://")):
        check_server(uri)
    return uri


# Tables every MLflow SQL store has had since its first schema: without them the file is not an MLflow store.
_MLFLOW_TABLES = {"alembic_version", "experiments", "runs"}


def check_sqlite_store(uri: str) -> None:
    """Refuse ``uri`` unless its file exists and is an MLflow store, looking at it through a read-only
    connection (SQLite's ``mode=ro``): a missing, empty, corrupt or other application's file stays untouched."""
    import sqlite3

    path = Path(uri.removeprefix("sqlite:///"))
    if not path.is_file():
        raise ConfigError("tracking-uri", f"no MLflow store at {uri} ({path} does not exist)")
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as connection:
            rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
            damage = connection.execute("PRAGMA quick_check(3)").fetchall()  # reads every page once: ~1 s per GB
    except sqlite3.DatabaseError as err:
        raise ConfigError("tracking-uri", f"{path} is not an MLflow store: SQLite cannot read it ({err})") from None
    missing = _MLFLOW_TABLES - {name for (name,) in rows}
    if damage != [("ok",)]:
        found = "; ".join(str(row[0]) for row in damage)
        raise ConfigError("tracking-uri", f"the MLflow store {path} is corrupt (SQLite's check: {found})")
    if missing:
        what = (
            "an empty file" if path.stat().st_size == 0 else f"a database without MLflow's {', '.join(sorted(missing))}"
        )
        raise ConfigError(
            "tracking-uri", f"{path} is not an MLflow store ({what}); a read-only command never creates one"
        )


def check_file_store(uri: str) -> None:
    """Refuse a ``file:`` store folder that does not exist or holds no MLflow experiment (MLflow would create it)."""
    from urllib.parse import urlparse

    path = Path(urlparse(uri).path)
    if not path.is_dir() or not (any(path.glob("*/meta.yaml")) or (path / ".trash").is_dir()):
        raise ConfigError("tracking-uri", f"no MLflow file store at {uri}; a read-only command never creates one")


# Long enough for a loaded server to answer, far shorter than MLflow's own retries (minutes).
SERVER_TIMEOUT_S = 10.0


def check_server(uri: str) -> None:
    """Refuse a tracking server that cannot be reached (any HTTP answer, even 401 or 404, counts as reached)."""
    import requests

    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=SERVER_TIMEOUT_S)
    except requests.RequestException as err:
        reason = type(err).__name__
        raise ConfigError(
            "tracking-uri", f"the tracking server at {uri} does not answer ({reason}): is it running, is the URL right?"
        ) from None


def client_for(uri: str) -> MlflowClient:
    """A client whose model registry is the tracking store too (one server holds runs and models)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def open_store(given: str | None = None) -> MlflowClient:
    """A reader's client: the resolved store, which must exist."""
    return client_for(resolve_tracking_uri(given, read_only=True))
