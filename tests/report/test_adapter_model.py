"""Adapters as MLflow Models, against a real MLflow server: every trial logs one, the registry points at it,
``mlflow.pyfunc.load_model`` predicts with it and ``mlflow models serve`` answers ``/invocations``."""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from subprocess import STDOUT, Popen

import pytest
from servers import free_port, stop_group, wait_http
from sweep_record import greedy, trial_model

from orchestration.models import load_tokenizer
from orchestration.registry.loading import load_registered_adapter, run_model_id
from orchestration.registry.promote import promote
from orchestration.tracking import schema
from orchestration.tracking.store import client_for

PROMPTS = ["What is 3 + 4?", "Tom has 5 apples and eats 2. How many are left?"]
NEW_TOKENS = 8


@pytest.fixture(scope="module")
def served_champion(sweep_a, mlflow_server):
    """Sweep A promoted into a fresh registered model, and the greedy completions of its run's exact model."""
    from orchestration.data.prompts import build_prompt

    name = f"comol-serve-{uuid.uuid4().hex[:8]}"
    promotion = promote(sweep_a.name, name, tracking_uri=mlflow_server.uri, force=True)  # not better than LoRA
    run = next(r for r in sweep_a.runs if r.run_id == promotion.choice.run.run_id)
    trained, _ = trial_model(sweep_a.base, run.method, run.adapter, run.seed)
    tokenizer = load_tokenizer(str(sweep_a.base))
    expected = [greedy(trained, tokenizer, build_prompt(p), NEW_TOKENS) for p in PROMPTS]
    assert all(text.strip() for text in expected) and expected[0] != expected[1]
    return promotion, expected


def test_every_trial_logs_its_adapter_as_a_model(sweep_a, mlflow_server, tmp_path):
    import mlflow.artifacts
    from mlflow.models import Model

    client = client_for(mlflow_server.uri)
    run = sweep_a.runs[0]
    model_id = run_model_id(client, run.run_id)
    assert model_id is not None
    logged = client.get_logged_model(model_id)
    assert logged.status == "READY" and logged.source_run_id == run.run_id
    assert logged.tags[schema.CONFIG_ID] == run.config_id and logged.tags[schema.SEED] == str(run.seed)
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=logged.artifact_location, dst_path=str(tmp_path), tracking_uri=mlflow_server.uri
        )
    )
    description = Model.load(str(local))
    signature = description.signature
    assert [t.name for t in signature.inputs.input_types()] == ["string"]  # one column: a list or a `prompt` column
    assert {p.name for p in signature.params.params} >= {"max_new_tokens", "do_sample", "temperature"}
    example = json.loads((local / "input_example.json").read_text())
    assert example["columns"] == ["prompt"] and example["data"][0][0]
    pins = (local / "requirements.txt").read_text().split()
    assert {p.split("==")[0] for p in pins} >= {"comol-sweep", "torch", "transformers", "peft", "mlflow"}
    assert all("==" in p for p in pins)  # exact pins, nothing floating
    adapter_files = {p.name for p in (local / "artifacts" / schema.ADAPTER_ARTIFACT).iterdir()}
    run_files = {f.path.rsplit("/", 1)[-1] for f in client.list_artifacts(run.run_id, schema.ADAPTER_ARTIFACT)}
    assert adapter_files == run_files and "adapter_config.json" in adapter_files


def test_registered_version_points_at_the_model(served_champion, mlflow_server):
    promotion, _ = served_champion
    client = client_for(mlflow_server.uri)
    version = client.get_model_version_by_alias(promotion.model_name, "champion")
    model_id = run_model_id(client, promotion.choice.run.run_id)
    assert model_id is not None and version.source == f"models:/{model_id}"
    assert version.run_id == promotion.choice.run.run_id


def test_pyfunc_load_model_predicts_the_trials_completions(served_champion, mlflow_server, monkeypatch):
    import mlflow.pyfunc

    promotion, expected = served_champion
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    model = mlflow.pyfunc.load_model(f"models:/{promotion.model_name}@champion")
    assert model.predict(PROMPTS, params={"max_new_tokens": NEW_TOKENS}) == expected
    import pandas as pd

    assert model.predict(pd.DataFrame({"prompt": PROMPTS[:1]}), params={"max_new_tokens": NEW_TOKENS}) == expected[:1]
    with pytest.raises(Exception, match="max_new_tokens"):
        model.predict(PROMPTS, params={"max_new_tokens": "lots"})


def test_load_registered_adapter_and_generate_still_work_on_the_version(served_champion, mlflow_server, capsys):
    from orchestration.cli import main

    promotion, expected = served_champion
    uri = f"models:/{promotion.model_name}@champion"
    loaded = load_registered_adapter(uri, tracking_uri=mlflow_server.uri)
    assert loaded.prompt_template == "alpaca"
    argv = ["generate", "--model", uri, "--prompt", PROMPTS[0], "--max-new-tokens", str(NEW_TOKENS)]
    assert main([*argv, "--tracking-uri", mlflow_server.uri]) == 0
    assert capsys.readouterr().out == expected[0] + "\n"


def test_the_model_prompts_with_the_template_its_adapter_records(tiny_base, mlflow_server, monkeypatch, tmp_path):
    import mlflow.pyfunc

    from comol import save_adapter
    from orchestration.data.prompts import build_prompt, record_template
    from orchestration.serving.package import log_adapter_model

    trained, config = trial_model(tiny_base, "lora", {"r": 4}, seed=5)
    save_adapter(trained, tmp_path / "adapter", config)
    record_template(tmp_path / "adapter", "short")
    client = client_for(mlflow_server.uri)
    experiment = client.create_experiment(f"comol-test-{uuid.uuid4().hex[:8]}")
    run_id = client.create_run(experiment).info.run_id
    model_id = log_adapter_model(client, experiment, run_id, tmp_path / "adapter", name="adapter")
    tokenizer = load_tokenizer(str(tiny_base))
    short = greedy(trained, tokenizer, build_prompt(PROMPTS[1], template="short"), NEW_TOKENS)
    alpaca = greedy(trained, tokenizer, build_prompt(PROMPTS[1]), NEW_TOKENS)
    assert short.strip() and short != alpaca
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)
    model = mlflow.pyfunc.load_model(f"models:/{model_id}")
    assert model.predict(PROMPTS[1:], params={"max_new_tokens": NEW_TOKENS}) == [short]


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.mark.slow
def test_mlflow_models_serve_answers_invocations(served_champion, mlflow_server, tmp_path):
    """``mlflow models serve -m models:/NAME@champion --env-manager local``, a real process and real HTTP."""
    promotion, expected = served_champion
    port = free_port()
    mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    log_path = tmp_path / "serve.log"
    command = [mlflow_bin, "models", "serve", "-m", f"models:/{promotion.model_name}@champion"]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # mlflow execs `uvicorn` by name: the venv's bin must be on PATH even when the venv is not activated
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server.uri, "PATH": path}
    with open(log_path, "wb") as log:
        process = Popen(command, stdout=log, stderr=STDOUT, env=env, start_new_session=True, cwd=tmp_path)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", process, log_path, timeout=180)
        url = f"http://127.0.0.1:{port}/invocations"
        status, answer = _post(url, {"inputs": PROMPTS, "params": {"max_new_tokens": NEW_TOKENS}})
        assert status == 200, answer
        assert answer == {"predictions": expected}
        split = {"dataframe_split": {"columns": ["prompt"], "data": [[PROMPTS[1]]]}}
        status, answer = _post(url, {**split, "params": {"max_new_tokens": NEW_TOKENS}})
        assert (status, answer) == (200, {"predictions": expected[1:]})
        status, answer = _post(url, {"inputs": PROMPTS, "params": {"max_new_tokens": "lots"}})
        assert status == 400 and "max_new_tokens" in json.dumps(answer)  # the caller's error, not a crash
    finally:
        stop_group(process)
