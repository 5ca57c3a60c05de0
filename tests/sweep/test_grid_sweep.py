"""A 2 × 2 grid × 2 seeds on the tiny model, on a real local Ray and a real mlflow server: exactly 8 child runs
with the right params, tags, metrics and artifacts; a resume trains nothing and adds nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sweep_helpers import grid_spec

from comol.errors import ConfigError
from orchestration.sweep.runner import run_sweep
from orchestration.sweep.spec import parse_spec
from orchestration.tracking import schema
from orchestration.tracking.queries import search_all
from orchestration.tracking.writer import ATTEMPTS


def _trainings(sweep_dir: Path) -> list[dict]:
    path = sweep_dir / "attempts.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _artifacts(client, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for item in client.list_artifacts(run_id, path):
        out += _artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return out


@pytest.mark.slow
def test_grid_two_by_two_by_two_seeds(ray_session, mlflow_server, tiny_model_dir, tmp_path):
    from mlflow import MlflowClient

    spec = parse_spec(grid_spec("grid-2x2x2", tiny_model_dir))
    out = tmp_path / "sweep"
    result = run_sweep(spec, tracking_uri=mlflow_server.uri, output_dir=str(out))
    assert result.complete and result.planned == 8 and result.finished == 8 and result.ran == 8

    client = MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name(schema.experiment_name("grid-2x2x2"))
    eid = experiment.experiment_id
    parents = search_all(client, eid, f"tags.`{schema.ROLE}` = '{schema.ROLE_SWEEP}'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert parents[0].info.run_id == result.parent_run_id
    children = search_all(client, eid, f"tags.`{schema.ROLE}` = '{schema.ROLE_TRIAL}'")
    assert len(children) == 8
    identities = {(r.data.tags[schema.CONFIG_ID], int(r.data.tags[schema.SEED])) for r in children}
    assert len(identities) == 8 and {seed for _, seed in identities} == {0, 1}
    assert len({config for config, _ in identities}) == 4

    seen = set()
    for run in children:
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert run.info.status == "FINISHED"
        assert tags[schema.PARENT_RUN_ID] == result.parent_run_id
        assert tags[schema.SWEEP] == "grid-2x2x2" and tags[ATTEMPTS] == "1"
        assert tags[schema.METHOD] == params["method"] in ("lora", "comol")
        assert params["training.seed"] == tags[schema.SEED]
        assert params["adapter.r"] in ("2", "4") and params["adapter.alpha"] == f"{float(params['adapter.r'])}"
        assert params["training.lr"] == "0.001" and params["model"] == str(tiny_model_dir)
        assert ("adapter.num_experts" in params) == (params["method"] == "comol")
        seen.add((params["method"], params["adapter.r"], tags[schema.SEED]))
        # per-step history and final metrics
        history = client.get_metric_history(run.info.run_id, "train/loss")
        assert [m.step for m in history] == [1, 2, 3, 4]
        for name in (schema.METRIC_AVERAGE, "eval/loss", schema.METRIC_TRAIN_TIME, "time/trial_s"):
            assert name in metrics, name
        assert 0.0 <= metrics[schema.METRIC_AVERAGE] <= 1.0
        # cost from comol's accounting: q (32→32) and v (32→16) on 2 layers
        r = int(params["adapter.r"])
        lora = 2 * (r * (32 + 32) + r * (32 + 16))
        expected = lora if params["method"] == "lora" else lora + 2 * 2 * (2 * r * r + 2 * r)
        assert metrics[schema.METRIC_TRAINABLE] == expected
        assert metrics[schema.METRIC_FLOPS] > 0
        files = _artifacts(client, run.info.run_id)
        assert {
            "adapter/adapter_config.json",
            "adapter/adapter_model.safetensors",
            schema.CONFIG_ARTIFACT,
            f"{schema.GENERATIONS_DIR}/smoke.jsonl",
        } <= set(files), files
        config = client.download_artifacts(run.info.run_id, schema.CONFIG_ARTIFACT, str(tmp_path / run.info.run_id))
        import yaml

        resolved = yaml.safe_load(Path(config).read_text())
        assert (
            schema.config_id({k: v for k, v in resolved.items() if k not in ("name", "run_name", "output_dir")})
            == (tags[schema.CONFIG_ID])
        )
    assert len(seen) == 8

    trainings = _trainings(out)
    assert sorted(e["trial"] for e in trainings if e["event"] == "finish") == sorted(f"{c}-s{s}" for c, s in identities)

    # Running it again without --resume is refused; with --resume nothing is trained or duplicated.
    with pytest.raises(ConfigError, match="--resume"):
        run_sweep(spec, tracking_uri=mlflow_server.uri, output_dir=str(out))
    again = run_sweep(spec, resume=True, tracking_uri=mlflow_server.uri, output_dir=str(out))
    assert again.complete and again.ran == 0 and again.finished == 8
    assert len(search_all(client, eid, f"tags.`{schema.ROLE}` = '{schema.ROLE_TRIAL}'")) == 8
    assert _trainings(out) == trainings
