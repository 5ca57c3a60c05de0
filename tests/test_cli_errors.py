"""The CLI's one error boundary: hostile input to any command is one paragraph naming the file or field, exit code
2 and no traceback (``--debug`` shows it); a read-only command never writes into a store the user named."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path

import pytest
from servers import free_port
from tiny_models import save_tiny_model

from comol import inject_adapter, make_config, save_adapter
from comol.persistence import CONFIG_NAME, WEIGHTS_NAME
from orchestration.cli import main

QWEN3 = json.loads((Path(__file__).parents[1] / "comol" / "model_configs" / "qwen3-8b.json").read_text())


def _file(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(path)


def _params(path: str) -> list[str]:
    return ["params", "--model-config", path, "--method", "comol"]


def _score(path: str) -> list[str]:
    return ["score", "--task", "math", "--dataset", "gsm8k", "--data", path]


BINARY = b"\xff\xfe\x00\x01\x89PNG"
# (id, file name, content, the command given the file's path, words the message must contain)
CASES = [
    ("train-binary-yaml", "c.yaml", BINARY, lambda p: ["train", p], ["c.yaml", "UTF-8"]),
    ("sweep-binary-yaml", "s.yaml", BINARY, lambda p: ["sweep", p, "--dry-run"], ["s.yaml", "UTF-8"]),
    ("sweep-duplicate-key", "s.yaml", "name: a\nname: b\n", lambda p: ["sweep", p, "--dry-run"], ["duplicate"]),
    ("params-binary-json", "config.json", BINARY, _params, ["config.json", "UTF-8"]),
    ("params-unknown-model-type", "config.json", json.dumps({**QWEN3, "model_type": "nosuch"}), _params, ["nosuch"]),
    ("params-negative-size", "config.json", json.dumps({**QWEN3, "hidden_size": -8}), _params, ["hidden_size"]),
    ("score-deeply-nested", "d.json", "[" * 100_000 + "]" * 100_000, _score, ["d.json", "nested"]),
    ("score-huge-number", "d.json", '[{"output": "1", "answer": ' + "9" * 5000 + "}]", _score, ["d.json", "digits"]),
]


@pytest.mark.parametrize(("case", "name", "content", "argv", "words"), CASES, ids=[c[0] for c in CASES])
def test_hostile_files_get_one_paragraph_and_exit_2(tmp_path, capsys, case, name, content, argv, words):
    assert main(argv(_file(tmp_path, name, content))) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert all(word in err for word in words), err


def test_debug_shows_the_traceback_before_the_paragraph(tmp_path, capsys):
    path = _file(tmp_path, "config.json", BINARY)
    for argv in (["--debug", *_params(path)], [*_params(path), "--debug"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("Traceback") and err.strip().splitlines()[-1].startswith("comol params: error:"), err


def test_a_fault_of_the_program_is_one_paragraph_too(monkeypatch, capsys):
    """Not bad input (exit 1), still no traceback unless asked for."""
    import comol.cli.params

    def broken(_args):
        raise RuntimeError("an internal fault")

    monkeypatch.setattr(comol.cli.params, "run", broken)
    assert main(["params", "--model-config", "qwen3-8b", "--method", "lora"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "an internal fault" in err and "--debug" in err, err


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _mlflow_sqlite(path: Path) -> Path:
    """A real MLflow SQLite store with one run, as `comol sweep` leaves one."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{path}")
    run = client.create_run(client.create_experiment("comol-sweep/x"))
    for index in range(100):
        client.log_param(run.info.run_id, f"p{index}", "v" * 200)
    return path


def _corrupt(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    for index in range(4096 * 3, min(len(raw), 4096 * 40), 7):  # the pages after the schema
        raw[index] = 0xAB
    path.write_bytes(bytes(raw))


def _foreign(path: Path) -> None:
    import sqlite3

    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE notes (body TEXT)")
        connection.execute("INSERT INTO notes VALUES ('my own data')")


@pytest.mark.parametrize("store", ["another-applications-database", "empty-file", "not-a-database", "corrupt-mlflow"])
@pytest.mark.parametrize("command", ["report", "promote"])
def test_read_only_commands_leave_a_foreign_or_broken_store_untouched(tmp_path, capsys, store, command):
    path = tmp_path / "store.db"
    if store == "another-applications-database":
        _foreign(path)
    elif store == "empty-file":
        path.write_bytes(b"")
    elif store == "not-a-database":
        path.write_bytes(b"SQLite format 2\x00" + bytes(range(256)) * 20)
    else:
        _corrupt(_mlflow_sqlite(path))
    before = _digest(path)
    capsys.readouterr()
    argv = [command, "sweep-x", "--tracking-uri", f"sqlite:///{path}"]
    if command == "promote":
        argv += ["--model-name", "m"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "tracking-uri" in err, err
    assert _digest(path) == before  # MLflow's tables were not written into it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.db"]


def test_an_unreachable_tracking_server_fails_within_seconds(tmp_path, capsys):
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    assert main(["report", "sweep-x", "--tracking-uri", uri, "--out", str(tmp_path / "out")]) == 2
    assert time.monotonic() - started < 60  # MLflow's own retries take minutes
    err = capsys.readouterr().err
    assert uri in err and "does not answer" in err, err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("base") / "model")


def _logged_adapter(uri: str, folder: Path) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment(f"hostile-{uuid.uuid4().hex[:8]}"))
    client.log_artifacts(run.info.run_id, str(folder), "adapter")
    client.set_terminated(run.info.run_id)
    return f"runs:/{run.info.run_id}/adapter"


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("config-not-json", [CONFIG_NAME, "JSON"]),
        ("base-climbs-out", ["base_model_name_or_path", ".."]),
        ("weights-truncated", [WEIGHTS_NAME, "safetensors"]),
    ],
)
def test_generate_refuses_a_damaged_registered_adapter(tmp_path, mlflow_server, tiny_base, capsys, damage, words):
    from orchestration.models import load_model

    config = make_config("comol", r=2, num_experts=2, dropout=0.0, target_modules=["q_proj"])
    config.base_model_name_or_path = str(tiny_base)
    folder = save_adapter(inject_adapter(load_model(str(tiny_base)), config), tmp_path / "adapter", config)
    if damage == "config-not-json":
        (folder / CONFIG_NAME).write_text("{r: 2")
    elif damage == "base-climbs-out":
        data = json.loads((folder / CONFIG_NAME).read_text())
        data["base_model_name_or_path"] = "../../../" + tiny_base.name
        (folder / CONFIG_NAME).write_text(json.dumps(data))
    else:
        raw = (folder / WEIGHTS_NAME).read_bytes()
        (folder / WEIGHTS_NAME).write_bytes(raw[: len(raw) // 2])
    model_uri = _logged_adapter(mlflow_server.uri, folder)
    capsys.readouterr()
    argv = ["generate", "--model", model_uri, "--prompt", "1+1?", "--tracking-uri", mlflow_server.uri]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and all(word in err for word in words), err


def test_a_reader_never_creates_a_file_store(tmp_path, capsys):
    folder = tmp_path / "mlruns-typo"
    assert main(["report", "sweep-x", "--tracking-uri", folder.as_uri(), "--out", str(tmp_path / "out")]) == 2
    assert "no MLflow file store" in capsys.readouterr().err
    assert not folder.exists() and not (tmp_path / "out").exists()


def test_a_sweep_never_writes_its_tables_into_another_applications_database(tmp_path, capsys):
    path = tmp_path / "app.db"
    _foreign(path)
    before = _digest(path)
    spec = _file(
        tmp_path,
        "s.yaml",
        "name: s\nentry: smoke\ntrain: {model: smollm2-135m, data: {size: 16}}\n"
        "search: {grid: {method: [lora], rank: [2]}}\n",
    )
    argv = ["sweep", spec, "--tracking-uri", f"sqlite:///{path}", "--address", "127.0.0.1:1"]
    assert main([*argv, "--output-dir", str(tmp_path / "out")]) == 2
    assert "not an MLflow store" in capsys.readouterr().err
    assert _digest(path) == before and not (tmp_path / "out").exists()
