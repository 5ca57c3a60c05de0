"""A sweep's record stays one sweep: --resume with a changed spec is refused (naming the fields) unless
--allow-spec-change records the new spec as a revision, and a sweep folder onto a file fails before MLflow."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path

import pytest
import yaml
from sweep_helpers import grid_spec, write_spec

from orchestration.cli import main
from orchestration.sweep.runner import _open_record, prepare, spec_changes
from orchestration.tracking import schema
from orchestration.tracking.store import client_for
from orchestration.tracking.writer import SPEC_ARTIFACT, SPEC_CHANGES, SPEC_REVISION, SweepTracker


def _recorded(tmp_path: Path, uri: str, tiny_model_dir: Path) -> tuple[dict, Path, str]:
    """A sweep whose parent run (FINISHED) holds spec A, as an earlier `comol sweep` left it."""
    spec = grid_spec(f"resume-spec-{uuid.uuid4().hex[:8]}", tiny_model_dir)
    path = write_spec(tmp_path / "a.yaml", spec)
    loaded, _paths, _plan = prepare(path, str(tmp_path / "out"))
    tracker = SweepTracker(uri, loaded.name)
    tracker.ensure_experiment()
    tracker.ensure_parent(loaded.model_dump(mode="json"), "grid", tracker.find_parent())
    tracker.end()
    return spec, path, tracker.parent_run_id


def _artifact(uri: str, run_id: str, artifact: str, tmp_path: Path) -> dict:
    target = tmp_path / uuid.uuid4().hex
    target.mkdir()
    local = client_for(uri).download_artifacts(run_id, artifact, str(target))
    return yaml.safe_load(Path(local).read_text())


def test_resume_with_a_changed_spec_is_refused_and_touches_nothing(tmp_path, mlflow_server, tiny_model_dir, capsys):
    uri = mlflow_server.uri
    spec, _path_a, parent = _recorded(tmp_path, uri, tiny_model_dir)
    changed = copy.deepcopy(spec)
    changed["train"]["training"]["lr"] = 5e-3
    changed["search"]["grid"]["rank"] = [2, 8]
    path_b = write_spec(tmp_path / "b.yaml", changed)
    before = _artifact(uri, parent, SPEC_ARTIFACT, tmp_path)
    capsys.readouterr()
    argv = ["sweep", str(path_b), "--resume", "--tracking-uri", uri, "--address", "127.0.0.1:1"]
    assert main([*argv, "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "search.grid.r," in err and "train.training.lr" in err and "--allow-spec-change" in err, err
    assert err.count("\n") == 1, err
    client = client_for(uri)
    run = client.get_run(parent)
    assert run.info.status == "FINISHED" and SPEC_REVISION not in run.data.tags  # the record was not reopened
    assert _artifact(uri, parent, SPEC_ARTIFACT, tmp_path) == before
    tracker = SweepTracker(uri, spec["name"])
    tracker.ensure_experiment()  # it exists: found by name
    assert not tracker.trial_runs()
    assert not (tmp_path / "out").exists()


def test_seeds_and_concurrency_may_change_on_resume():
    spec = grid_spec("s", Path("/m"))
    more = copy.deepcopy(spec) | {"seeds": [0, 1, 2], "resources": {"max_concurrent_trials": 1}}
    assert spec_changes(spec, more) == []
    optuna = {"optuna": {"num_samples": 2, "space": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}}}
    larger = copy.deepcopy(optuna)
    larger["optuna"]["num_samples"] = 4  # a larger budget over the same space
    assert spec_changes(spec | {"search": optuna}, spec | {"search": larger}) == []
    assert spec_changes(spec, copy.deepcopy(spec) | {"metric": "eval/loss"}) == ["metric"]


def test_allow_spec_change_records_the_new_spec_as_a_revision(tmp_path, mlflow_server, tiny_model_dir):
    uri = mlflow_server.uri
    spec, _path_a, parent = _recorded(tmp_path, uri, tiny_model_dir)
    changed = copy.deepcopy(spec)
    changed["train"]["training"]["lr"] = 5e-3
    new_spec, paths, plan = prepare(write_spec(tmp_path / "b.yaml", changed), str(tmp_path / "out"))
    record = _open_record(new_spec, plan, paths, uri, None, resume=True, allow_spec_change=True)
    assert record.parent_run_id == parent  # the same sweep, continued
    tags = client_for(uri).get_run(parent).data.tags
    assert tags[SPEC_REVISION] == "1" and tags[SPEC_CHANGES] == "train.training.lr"
    assert _artifact(uri, parent, "sweep/revisions/spec-0.yaml", tmp_path)["train"]["training"]["lr"] == 1e-3
    assert _artifact(uri, parent, "sweep/revisions/spec-1.yaml", tmp_path)["train"]["training"]["lr"] == 5e-3
    assert _artifact(uri, parent, SPEC_ARTIFACT, tmp_path)["train"]["training"]["lr"] == 5e-3
    # resumed again with the revised spec: nothing changed, no new revision
    _open_record(new_spec, plan, paths, uri, None, resume=True)
    assert client_for(uri).get_run(parent).data.tags[SPEC_REVISION] == "1"


def test_allow_spec_change_needs_resume(tmp_path, capsys):
    path = write_spec(tmp_path / "a.yaml", grid_spec("s", tmp_path))
    assert main(["sweep", str(path), "--allow-spec-change", "--dry-run"]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["the-folder", "a-parent"])
def test_output_dir_onto_a_file_fails_before_mlflow(tmp_path, mlflow_server, tiny_model_dir, capsys, where):
    spec = grid_spec(f"out-file-{uuid.uuid4().hex[:8]}", tiny_model_dir)
    path = write_spec(tmp_path / "a.yaml", spec)
    blocking = tmp_path / "taken"
    blocking.write_text("someone's file\n")
    out = blocking if where == "the-folder" else blocking / "sweep"
    argv = ["sweep", str(path), "--tracking-uri", mlflow_server.uri, "--address", "127.0.0.1:1"]
    assert main([*argv, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--output-dir" in err and "is a file" in err, err
    assert client_for(mlflow_server.uri).get_experiment_by_name(schema.experiment_name(spec["name"])) is None
    assert blocking.read_text() == "someone's file\n"
    assert main(["sweep", str(path), "--dry-run", "--output-dir", str(out)]) == 2
