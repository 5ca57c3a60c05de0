"""Reading the sweep record back from MLflow: run filters by tag, and searches that follow every page.

Shared by the writer (which reopens a trial's run instead of duplicating it) and the report (which reads the
finished trials of a sweep).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestration.tracking import schema

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


def quote(value: str) -> str:
    """A string literal for an MLflow search filter."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def search_all(client: MlflowClient, experiment_id: str, filter_string: str) -> list[Run]:
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def runs_filter(role: str, sweep: str, config_id: str | None = None, seed: int | None = None) -> str:
    """The filter of a sweep's parent run (``schema.ROLE_SWEEP``) or trial runs (``ROLE_TRIAL``), optionally of
    one configuration and seed."""
    parts = [f"tags.`{schema.ROLE}` = {quote(role)}", f"tags.`{schema.SWEEP}` = {quote(sweep)}"]
    if config_id is not None:
        parts.append(f"tags.`{schema.CONFIG_ID}` = {quote(config_id)}")
    if seed is not None:
        parts.append(f"tags.`{schema.SEED}` = {quote(str(seed))}")
    return " and ".join(parts)
