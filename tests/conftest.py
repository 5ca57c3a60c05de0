"""Shared fixtures: tiny real transformers models built from a config (no downloads)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tiny_models import SHARED_DATA, tiny_config, tiny_model  # noqa: F401 - re-exported for fixtures

# Ray reads RAY_AUTH_MODE once, when it is first imported, and a local ray.init() turns token auth on when
# it is unset: pin it here, before any test module imports Ray, so every in-process and subprocess
# cluster of the session agrees (platform notes).
os.environ.setdefault("RAY_AUTH_MODE", "token")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` process (SQLite + proxied artifacts in a temp dir) for the session."""
    from servers import start_mlflow_server

    server = start_mlflow_server(tmp_path_factory.mktemp("mlflow"))
    yield server
    server.stop()
