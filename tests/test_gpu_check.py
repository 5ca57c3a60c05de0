"""benchmarks/gpu_check.sh: its CPU smoke mode end to end (the same steps the GPU run takes, tiny sizes), its hostile
paths, and the wheel bundle that carries its dependencies to a GPU machine in parts."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_bundle  # noqa: E402

CHECKS = {
    "versions_read",
    "train_finished",
    "loss_falls",
    "adapter_saved",
    "reload_matches",
    "step_benchmark_ran",
    "mfu_in_range",
}


def run_script(*args: str, timeout: int, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHON": sys.executable, "RAY_ADDRESS": "", **env}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, env=environment, timeout=timeout, check=False
    )


@pytest.mark.slow
def test_cpu_smoke_mode_trains_reloads_benchmarks_and_writes_one_json(tmp_path):
    out = tmp_path / "gpu_check.json"
    done = run_script("--cpu", "--out", str(out), "--work-dir", str(tmp_path / "work"), timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["mode"] == "cpu" and result["ok"] is True
    assert set(result["checks"]) == CHECKS and all(result["checks"].values()), result["checks"]

    versions = result["versions"]
    assert versions["torch"] == torch.__version__ and versions["missing"] == []
    assert versions["cuda_available"] is False and versions["nccl"] is None

    train = result["train"]
    steps = train["config"]["training"]["max_steps"]
    assert train["config"]["training"]["precision"] == "bf16" and train["config"]["resources"]["num_workers"] == 1
    assert len(train["losses"]) == steps and all(math.isfinite(loss) for loss in train["losses"])
    assert train["last_losses_mean"] < train["first_losses_mean"]
    adapter = Path(train["adapter"])
    assert adapter.is_relative_to(tmp_path / "work")  # nothing written outside the places named
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "adapter_config.json").is_file()
    assert train["reload_gap"] == pytest.approx(abs(train["reloaded_val_loss"] - train["val_loss"]))
    assert train["reload_gap"] <= 0.01 * train["val_loss"]

    bench = result["step_benchmark"]
    setup = bench["setup"]
    assert setup["device"] == "cpu" and setup["bf16_base"] is False and setup["peak_tflops"] == 1.0
    tokens = setup["batch"] * setup["seq_len"]
    lora, comol = bench["methods"]["lora"], bench["methods"]["comol"]
    assert comol["trainable_params"] > lora["trainable_params"] > 0
    for figures in bench["methods"].values():
        assert figures["median_step_s"] > 0 and figures["peak_step_bytes"] > 0
        assert figures["tokens_per_s"] == pytest.approx(tokens / figures["median_step_s"])
        assert figures["mfu"] == pytest.approx(figures["tokens_per_s"] * figures["flops_per_token"] / 1e12)
    assert bench["comol_vs_lora_step_time"] == pytest.approx(comol["median_step_s"] / lora["median_step_s"])
    assert result["elapsed_s"] > 0


def test_unknown_argument_exits_2_naming_the_allowed_ones():
    done = run_script("--gpus", "2", timeout=60)
    assert done.returncode == 2
    assert "unknown argument '--gpus'" in done.stderr and "--cpu" in done.stderr and "--bundle" in done.stderr


@pytest.mark.slow
def test_gpu_mode_without_a_gpu_records_why_and_fails(tmp_path):
    out = tmp_path / "gpu_check.json"
    work = ["--work-dir", str(tmp_path / "work")]
    done = run_script("--out", str(out), *work, timeout=300, COMOL_GPU_BUNDLE=str(tmp_path / "no-bundle"))
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "no bundle in" in done.stderr
    result = json.loads(out.read_text())
    assert result["ok"] is False and "no CUDA device" in result["error"] and "train" not in result


# --- the bundle -----------------------------------------------------------------------------------------------


def make_wheel(folder: Path, name: str, payload_bytes: int) -> Path:
    """A minimal pure-Python wheel whose module holds ``payload_bytes`` stored (uncompressed) bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-1.0-py3-none-any.whl"
    info = f"{name}-1.0.dist-info"
    files = {
        f"{name}/__init__.py": f"PAYLOAD = {os.urandom(payload_bytes // 2).hex()!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{file},,\n" for file in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for file, text in files.items():
            archive.writestr(file, text)
    return path


def installed(site: Path) -> set[str]:
    """The packages pip installed into a ``--target`` folder."""
    if not site.is_dir():
        return set()
    return {p.name for p in site.iterdir() if p.is_dir() and not p.name.endswith(".dist-info")}


def test_bundle_installs_every_wheel_whose_bytes_arrived_whole(tmp_path, capsys):
    wheels = [make_wheel(tmp_path / "wheels", f"tinypkg{i}", size) for i, size in enumerate((2_000, 3_000, 40_000))]
    bundle = tmp_path / ".gpu"
    parts = gpu_bundle.split_into_parts(wheels, bundle, part_bytes=16_384)
    assert len(parts) >= 3  # the big wheel spans several parts

    # Only the first part arrived: the two small wheels are whole, the big one is cut off and skipped.
    held_back = tmp_path / "held-back"
    held_back.mkdir()
    for part in parts[1:]:
        shutil.move(part, held_back / part.name)
    assert gpu_bundle.status(bundle) == 0
    assert "usable: part-00; missing: part-01" in capsys.readouterr().out
    assert gpu_bundle.unpack(bundle, tmp_path / "stage-first") == 0
    assert installed(tmp_path / "stage-first" / "site") == {"tinypkg0", "tinypkg1"}

    # A corrupted middle part stops at it, whatever follows.
    for part in held_back.iterdir():
        shutil.move(part, bundle / part.name)
    (bundle / "part-01").write_bytes(b"\0" * (bundle / "part-01").stat().st_size)
    assert gpu_bundle.usable_parts(bundle)[1][0] == "part-01"

    # Every part arrived intact: every wheel is installed.
    parts = gpu_bundle.split_into_parts(wheels, bundle, part_bytes=16_384)
    assert gpu_bundle.usable_parts(bundle) == (parts, [])
    assert gpu_bundle.unpack(bundle, tmp_path / "stage-all") == 0
    assert installed(tmp_path / "stage-all" / "site") == {"tinypkg0", "tinypkg1", "tinypkg2"}


def test_unpack_without_a_bundle_says_so(tmp_path, capsys):
    assert gpu_bundle.unpack(tmp_path / "absent", tmp_path / "stage") == 1
    assert "no bundle at" in capsys.readouterr().err
