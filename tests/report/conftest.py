"""The two sweep records the report and promotion tests read, written once per session on the real server."""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_record import BuiltSweep, build_sweep, save_tiny_base


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    return save_tiny_base(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture(scope="session")
def sweep_a(mlflow_server, tiny_base) -> BuiltSweep:
    return build_sweep(mlflow_server.uri, tiny_base, "a")


@pytest.fixture(scope="session")
def sweep_b(mlflow_server, tiny_base) -> BuiltSweep:
    return build_sweep(mlflow_server.uri, tiny_base, "b")
