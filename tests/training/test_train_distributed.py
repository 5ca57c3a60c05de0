"""Real Ray Train runs (TorchTrainer, FSDP2 on gloo, 2 CPU workers) on a tiny random Llama.

Kept to a few runs (each costs ~20 s of Ray start-up): a 1-worker and a 2-worker run on the same data,
seed and global batch (loss falls; adapters agree), a 2-worker run whose rank 1 is killed mid-run
(restarted, resumed from its checkpoint, same final adapter), and a run that diverges (clear failure).
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_AUTH_MODE", "token")  # pinned before Ray is imported (see platform notes)

import json
import re
import shutil
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import save_tiny_model

from comol import load_adapter
from orchestration.data.prompts import recorded_template
from orchestration.training.config import TrainConfig

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# 1 vs 2 workers: same examples per step and a global-token-mean loss, so the updates differ only by float
# summation order (gloo reduce-scatter, padding to a different length). After 12 AdamW steps at lr 3e-2
# the adapters agree to ~1e-6; 1e-4 leaves room for other BLAS kernels while still catching any real
# mismatch (a wrong loss normalisation or data shard moves weights by ~1e-2).
WORKER_COUNT_ATOL = 1e-4
STEPS = 12


@pytest.fixture(scope="module")
def ray_cluster():
    """One small local Ray for this module, in its own short temp dir (reused if the session has one)."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    temp_dir = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    logs = os.environ.get("COMOL_TEST_RAY_LOGS") == "1"  # set it to see the workers' logs (with -s)
    # Workers import the test hook (train_helpers.probe_hook) from this folder.
    path = os.pathsep.join(p for p in (str(Path(__file__).parent), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp_dir,
        log_to_driver=logs,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


def tiny_config(model_dir: Path, output_dir: Path, workers: int, **extra) -> TrainConfig:
    data = {
        "name": f"tiny{workers}w",
        "model": str(model_dir),
        "method": "comol",
        # dropout 0: ranks draw their own masks, and the 1- vs 2-worker comparison must be exact
        "adapter": {
            "r": 4,
            "num_experts": 2,
            "dropout": 0.0,
            "target_modules": ["q_proj", "v_proj", "o_proj", "down_proj"],
        },
        "data": {
            "source": "arithmetic",
            "size": 128,
            "val_size": 16,
            "cutoff_len": 320,
            "labels": "response",
            "prompt_template": "short",
        },
        "training": {"batch_size": 8, "lr": 3e-2, "warmup_steps": 2, "max_steps": STEPS, "seed": 0},
        "logging": {"log_every": 1, "eval_every": 6, "checkpoint_every": 4, "poll_interval_s": 0.25},
        "resources": {"num_workers": workers, "cpus_per_worker": 1, "max_failures": 1, "start_timeout_s": 60},
        "output_dir": str(output_dir),
    }
    for key, value in extra.items():
        data[key] = value if not isinstance(value, dict) else {**data.get(key, {}), **value}
    return TrainConfig.from_dict(data)


def adapter_tensors(adapter_path: str) -> dict[str, torch.Tensor]:
    return load_file(str(Path(adapter_path) / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def controller_env_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("controller") / "env.json"


@pytest.fixture(scope="module")
def two_worker_run(ray_cluster, tiny_model_dir, outputs, controller_env_file):
    from train_helpers import ControllerEnvironment

    from orchestration.training.launch import train

    environment = dict(os.environ)
    result = train(
        tiny_config(tiny_model_dir, outputs, workers=2), callbacks=[ControllerEnvironment(controller_env_file)]
    )
    assert dict(os.environ) == environment  # train() leaves this process's environment as it found it
    return result


def test_bad_config_fails_before_ray_starts(tmp_path):
    """`comol train` with an invalid config exits 2 naming the field, and Ray is never initialised."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {source: arithmetic, size: 8, labels: prompt}\n")
    script = (
        "import sys, ray\n"
        "from orchestration.cli import main\n"
        f"code = main(['train', {str(bad)!r}])\n"
        "print('RESULT', code, ray.is_initialized())\n"
    )
    env = {**os.environ, "RAY_ADDRESS": ""}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert "RESULT 2 False" in done.stdout, done.stdout + done.stderr
    assert "data.labels" in done.stderr and "all, response" in done.stderr


def test_two_workers_learn_and_match_one_worker(ray_cluster, tiny_model_dir, outputs, two_worker_run):
    from orchestration.training.launch import train

    two = two_worker_run
    losses = [m["loss"] for m in two.history if "loss" in m]
    assert two.steps == list(range(1, STEPS + 1))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1, losses  # the loss falls
    assert two.metrics["status"] == "finished" and two.metrics["world_size"] == 2
    assert "val_loss" in two.metrics and two.metrics["tokens_per_s"] > 0 and two.metrics["peak_mem_gb"] > 0
    assert {"lr", "grad_norm"} <= set(two.history[0])

    # The 1-worker run also runs the post-training hook (evaluation's entry point) on the trained model.
    hook = {"hook": "train_helpers:probe_hook", "options": {"option": 7}}
    one = train(tiny_config(tiny_model_dir, outputs, workers=1, evaluation=hook))
    a, b = adapter_tensors(one.adapter_path), adapter_tensors(two.adapter_path)
    assert a.keys() == b.keys() and len(a) > 0
    max_diff = max((a[k] - b[k]).abs().max().item() for k in a)
    moved = max(a[k].abs().max().item() for k in a if "comol_B" in k)
    print(f"1 vs 2 workers: max abs diff {max_diff:.3e} (largest B entry {moved:.3e})")
    assert moved > 1e-2  # B started at zero: the adapters really trained
    assert max_diff < WORKER_COUNT_ATOL
    assert abs(one.metrics["loss"] - two.metrics["loss"]) < 1e-4
    saved_max_b = max(a[k].abs().max().item() for k in a if "comol_B" in k)
    assert one.metrics["eval/max_abs_B"] == pytest.approx(saved_max_b, abs=1e-7)  # the trained adapter
    assert one.metrics["eval/adapter_layers"] == 8 and one.metrics["eval/in_eval_mode"] == 1
    assert one.metrics["eval/world_size"] == 1 and one.metrics["eval/option"] == 7
    # Trained with the short template: the adapter records it and the evaluation hook was told it.
    assert one.metrics["eval/short_prompt"] == 1 and recorded_template(two.adapter_path) == "short"
    assert not any(key.startswith("eval/") for key in two.metrics)  # no hook configured

    # The saved adapter is a PEFT-layout folder that comol.load_adapter puts into a fresh base model.
    from transformers import AutoModelForCausalLM

    model, config = load_adapter(AutoModelForCausalLM.from_pretrained(tiny_model_dir), two.adapter_path)
    assert config.method == "comol" and config.r == 4
    loaded = {k: v for k, v in model.state_dict().items() if "comol_B" in k}
    assert loaded and all(v.abs().max() > 0 for v in loaded.values())
    meta = json.loads((Path(two.adapter_path) / "adapter_config.json").read_text())
    assert meta["peft_type"] == "COMOL" and meta["base_model_name_or_path"] == str(tiny_model_dir)


def test_the_runs_settings_reach_the_train_controller(two_worker_run, controller_env_file):
    """Ray Train's controller reads the start timeout and its polling interval from its environment: the run's
    values get there (in the controller's runtime env), not through this process's environment."""
    seen = json.loads(controller_env_file.read_text())
    assert seen == {"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "60.0", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25"}
    assert "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S" not in os.environ


def test_killed_worker_is_restarted_and_resumes_from_its_checkpoint(
    ray_cluster, tiny_model_dir, outputs, two_worker_run, tmp_path
):
    from train_helpers import kill_rank_after_step

    from orchestration.training.launch import train

    # Also HSDP with shard groups of one (every worker holds the whole model; only gradients travel): the
    # checkpoint, restart and result must not depend on how the model is sharded.
    config = tiny_config(tiny_model_dir, outputs, workers=2, name="fault", resources={"shard_size": 1})
    marker = tmp_path / "rank1-step5.fired"
    result = train(config, worker_loop=partial(kill_rank_after_step, rank=1, step=5, marker=str(marker)))
    assert marker.read_text() == "rank 1 exited after reporting step 5\n"  # a real worker process died, once
    # Checkpoints at steps 4 and 8: rank 1 died at the start of step 6, the group restarted from step 4.
    record = [(m["step"], m["resumed_from_step"]) for m in result.history]
    assert result.resumed_from_step == 4, record
    first = [step for step, resumed in record if resumed == 0]
    second = [step for step, resumed in record if resumed == 4]
    assert record == [(s, 0) for s in first] + [(s, 4) for s in second], record  # one restart
    # The first attempt reported steps 1-4 (and 5, unless rank 1 died before the controller collected it).
    assert first in (list(range(1, 5)), list(range(1, 6))), record
    assert second == list(range(5, STEPS + 1)), record  # resumed at step 5, not at step 1
    assert result.metrics["status"] == "finished" and result.metrics["step"] == STEPS
    # Optimizer, scheduler and data position were restored: the same adapter as the uninterrupted (fully
    # sharded) run, up to the float order of an all-reduce instead of a reduce-scatter.
    a, b = adapter_tensors(result.adapter_path), adapter_tensors(two_worker_run.adapter_path)
    max_diff = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"resumed HSDP run vs uninterrupted FSDP run: max abs diff {max_diff:.3e}")
    assert max_diff < WORKER_COUNT_ATOL


def test_non_finite_loss_stops_the_run_with_a_clear_error(ray_cluster, tiny_model_dir, outputs, tmp_path, capsys):
    """Adam moves every weight by ~lr on its first step: lr 1e30 overflows the next forward pass.

    Run through ``comol train`` (the CLI joins the session's Ray): exit 1 and the reason, no traceback."""
    import yaml

    from orchestration.cli import main

    config = tiny_config(
        tiny_model_dir,
        outputs,
        workers=1,
        name="diverge",
        training={"lr": 1e30, "warmup_steps": 0, "max_steps": 4, "max_grad_norm": None},
        logging={"checkpoint_every": None, "eval_every": None},
    )
    path = tmp_path / "diverge.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert main(["train", str(path)]) == 1
    out = capsys.readouterr().out
    assert "comol train: failed" in out
    assert re.search(r"non-finite training loss at step \d", out), out
    assert "Traceback" not in out
