"""Which MLflow store a command talks to, and the one client every writer and reader builds for it.

Every command resolves the tracking URI the same way: ``--tracking-uri``, then the spec's ``tracking.uri``
(sweeps), then ``$MLFLOW_TRACKING_URI``, then one default, a SQLite store in the working directory. Readers
(report, promote, generate) never create a store: a SQLite file that does not exist is an error there.
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
    if read_only and uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ConfigError("tracking-uri", f"no MLflow store at {uri} ({path} does not exist)")
    return uri


def client_for(uri: str) -> MlflowClient:
    """A client whose model registry is the tracking store too (one server holds runs and models)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def open_store(given: str | None = None) -> MlflowClient:
    """A reader's client: the resolved store, which must exist."""
    return client_for(resolve_tracking_uri(given, read_only=True))
