"""Optuna TPE on a real local Ray: every suggestion runs all seeds, Optuna learns the seed mean, and the study
persisted in the sweep folder continues on resume — interrupted suggestions are re-run with the same values."""

from __future__ import annotations

import statistics

import pytest
from sweep_helpers import grid_spec

from orchestration.sweep.runner import run_sweep
from orchestration.sweep.search import DefineByRun, open_study
from orchestration.sweep.spec import parse_spec
from orchestration.tracking import schema
from orchestration.tracking.queries import search_all


def _spec(num_samples: int):
    data = grid_spec("optuna-resume", "unused")
    data["search"] = {
        "optuna": {
            "num_samples": num_samples,
            "sampler_seed": 3,
            "space": {
                "method": ["lora", "comol"],
                "rank": [2, 4],
                "experts": [2, 3],
                "lr": {"low": 1e-4, "high": 1e-2, "log": True},
            },
            # A metric only the trial's last report carries (and that without a step): ASHA stops nothing, and
            # Tune must not require the metric in the per-step reports.
            "asha": {"metric": "eval/loss", "mode": "min", "time_attr": "step", "max_t": 4, "grace_period": 1},
        }
    }
    data["metric"], data["mode"] = "eval/loss", "min"
    return data


@pytest.mark.slow
def test_optuna_seed_mean_and_resume(ray_session, mlflow_server, tiny_model_dir, tmp_path):
    from mlflow import MlflowClient
    from optuna.trial import TrialState

    out = tmp_path / "sweep"
    first = _spec(2)
    first["train"]["model"] = str(tiny_model_dir)
    spec = parse_spec(first)
    result = run_sweep(spec, tracking_uri=mlflow_server.uri, output_dir=str(out))
    assert result.complete and result.planned == 4 and result.finished == 4

    client = MlflowClient(mlflow_server.uri)
    eid = client.get_experiment_by_name(schema.experiment_name("optuna-resume")).experiment_id
    children = search_all(client, eid, f"tags.`{schema.ROLE}` = '{schema.ROLE_TRIAL}'")
    by_config: dict[str, list] = {}
    for run in children:
        by_config.setdefault(run.data.tags[schema.CONFIG_ID], []).append(run)
    assert sorted(len(runs) for runs in by_config.values()) == [2, 2]  # both seeds of each suggestion

    study = open_study(spec, out)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 2
    means = sorted(statistics.fmean(r.data.metrics["eval/loss"] for r in runs) for runs in by_config.values())
    assert sorted(t.value for t in complete) == pytest.approx(means)  # Optuna learned the seed mean

    # A driver killed mid-suggestion leaves an Optuna trial RUNNING: make one, as that driver would have.
    interrupted = study.ask()
    point = DefineByRun(spec)(interrupted)

    # Resume with a larger budget: the 2 told configurations stay, the interrupted one runs first, then 1 new.
    second = parse_spec({**first, "search": _spec(4)["search"]})
    resumed = run_sweep(second, resume=True, tracking_uri=mlflow_server.uri, output_dir=str(out))
    assert resumed.complete and resumed.planned == 8 and resumed.finished == 8 and resumed.ran == 4

    study = open_study(second, out)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 4
    assert point in [t.params for t in complete[2:]]  # the interrupted values were re-run, not dropped
    assert study.trials[interrupted.number].state == TrialState.FAIL
    children = search_all(client, eid, f"tags.`{schema.ROLE}` = '{schema.ROLE_TRIAL}'")
    assert len(children) == 8
    assert len({(r.data.tags[schema.CONFIG_ID], r.data.tags[schema.SEED]) for r in children}) == 8
    assert all(r.info.status == "FINISHED" for r in children)
