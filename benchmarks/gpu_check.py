"""The GPU check's steps; ``benchmarks/gpu_check.sh`` prepares the environment and runs this (read its header).

1. versions: Python, torch, CUDA, NCCL, the GPU, and the packages the project pins;
2. ``comol train`` (the real CLI, a private local Ray, one worker, FSDP2 + bf16): the loss falls, the adapter is
   saved, and reloaded into a fresh base model it reproduces the validation loss the trained (sharded) model
   reported: the mean of its log-softmax logits at every label token, so the logits match;
3. ``benchmarks/train_step.py``: CoMoL vs PEFT LoRA (and MoLoRA) training-step time, peak step memory and MFU on a
   random-weight model built from a config (TinyLlama-1.1B's shape on the GPU).

``--cpu`` runs the same steps on the CPU with tiny sizes in seconds (the CI smoke test); only the sizes, the model
and the device differ. Every step's outcome goes into one JSON (``--out``); the exit code is 0 when every check
passed. A step that cannot run (a package missing) is recorded with its reason, and the later steps still run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "down_proj"]
PINNED = ("transformers", "peft", "ray", "pydantic", "datasets", "safetensors", "gguf")
# TinyLlama-1.1B's shape: 1.1 B parameters, untied LM head (so MFU counts its matmul as a frozen Linear).
STEP_MODEL_GPU = {
    "model_type": "llama",
    "vocab_size": 32000,
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": False,
}
STEP_MODEL_CPU = STEP_MODEL_GPU | {
    "vocab_size": 256,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}


@dataclass
class Mode:
    """Everything that differs between the GPU run and the CPU smoke run."""

    name: str
    device: str
    train: dict[str, Any]  # overrides of the training config
    train_timeout_s: int
    step_model: dict[str, Any]
    step_args: list[str]
    step_timeout_s: int
    reload_tolerance: float = 0.01  # relative: bf16 compute on both sides, different kernels and batch padding
    extra_env: dict[str, str] = field(default_factory=dict)


GPU = Mode(
    name="cuda",
    device="cuda",
    train={
        "model": "smollm2-135m",
        "data": {"size": 800, "val_size": 64, "cutoff_len": 128},
        "training": {"lr": 2e-3, "warmup_steps": 5, "max_steps": 40},
        "resources": {"gpus_per_worker": 1, "cpus_per_worker": 4},
    },
    train_timeout_s=240,
    step_model=STEP_MODEL_GPU,
    step_args=["--batch", "8", "--seq-len", "1024", "--warmup", "3", "--rounds", "3", "--steps", "5"],
    step_timeout_s=150,
)
CPU = Mode(
    name="cpu",
    device="cpu",
    train={
        "data": {"size": 64, "val_size": 16, "cutoff_len": 320},  # one byte per token: Alpaca prompts are long
        "training": {"lr": 3e-2, "warmup_steps": 2, "max_steps": 10},
        "resources": {"gpus_per_worker": 0, "cpus_per_worker": 1},
    },
    train_timeout_s=600,
    step_model=STEP_MODEL_CPU,
    step_args=["--batch", "2", "--seq-len", "32", "--warmup", "1", "--rounds", "1", "--steps", "1", "--threads", "1"],
    step_timeout_s=300,
    # No CPU has a known peak: a nominal 1 TFLOP/s lets the smoke run exercise the MFU arithmetic (its value
    # means nothing); a GPU run uses the device's own peak.
    extra_env={"COMOL_PEAK_TFLOPS": "1"},
)


def log(message: str) -> None:
    print(f"[gpu_check] {message}", flush=True)


# --- 1. versions ----------------------------------------------------------------------------------------------


def versions() -> dict[str, Any]:
    import torch

    found: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "nccl": None,
        "gpu": None,
    }
    if torch.cuda.is_available():
        found["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        found["gpu"] = torch.cuda.get_device_name(0)
        found["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    missing = []
    for name in PINNED:
        try:
            importlib.import_module(name)
            found[name] = metadata.version(name)
        except Exception as err:  # recorded, not fatal: a later step says what it could not do
            found[name] = None
            missing.append(f"{name} ({type(err).__name__}: {err})")
    found["missing"] = missing
    return found


# --- 2. comol train, then reload ------------------------------------------------------------------------------


def train_config(mode: Mode, work: Path) -> dict[str, Any]:
    """The training config: one worker, bf16, FSDP2 (build_model shards even one worker), arithmetic problems."""
    config: dict[str, Any] = {
        "name": "gpu-check",
        "run_name": f"gpu-check-{time.strftime('%Y%m%d-%H%M%S')}",
        "method": "comol",
        "adapter": {"r": 8, "alpha": 8, "num_experts": 4, "target_modules": TARGETS},
        "data": {"source": "arithmetic", "labels": "response"},
        "training": {"batch_size": 8, "seed": 0, "precision": "bf16"},
        "logging": {"log_every": 1, "eval_every": None, "checkpoint_every": None, "poll_interval_s": 0.25},
        "resources": {"num_workers": 1, "max_failures": 0, "start_timeout_s": 120},
        "output_dir": str(work / "runs"),
    }
    for key, value in mode.train.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) else value
    if "model" not in config:  # the CPU smoke run: a tiny Llama with a byte tokenizer, saved like the tests do
        sys.path.insert(0, str(REPO / "tests"))
        from tiny_models import save_tiny_model

        config["model"] = str(save_tiny_model(work / "tiny-model"))
    return config


STEP_LINE = re.compile(r"^step (\d+)/(\d+): loss ([-+0-9.eE]+|nan)(?: · val ([-+0-9.eE]+))?.*?(?:([0-9.]+) tok/s)?$")
ADAPTER_LINE = re.compile(r"^Adapter saved to: (.+)$")


def parse_train_output(text: str) -> dict[str, Any]:
    """Step losses, the final validation loss and the adapter folder from ``comol train``'s line-per-report log."""
    losses, val_loss, tokens_per_s, adapter = {}, None, None, None
    for line in text.splitlines():
        if found := STEP_LINE.match(line.strip()):
            losses[int(found[1])] = float(found[3])
            val_loss = float(found[4]) if found[4] else val_loss
            tokens_per_s = float(found[5]) if found[5] else tokens_per_s
        elif found := ADAPTER_LINE.match(line.strip()):
            adapter = found[1].strip()
    return {
        "losses": [losses[step] for step in sorted(losses)],
        "val_loss": val_loss,
        "tokens_per_s": tokens_per_s,
        "adapter": adapter,
    }


def run_train(mode: Mode, work: Path, env: dict[str, str]) -> dict[str, Any]:
    import yaml

    config = train_config(mode, work)
    path = work / "train.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "orchestration.cli", "train", str(path)]
    log(f"$ {' '.join(command)}")
    start = time.perf_counter()
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=mode.train_timeout_s, check=False
    )
    (work / "train.log").write_text(done.stdout + done.stderr)
    print(done.stdout, flush=True)
    result = {"exit_code": done.returncode, "seconds": time.perf_counter() - start, "config": config}
    result |= parse_train_output(done.stdout)
    if done.returncode != 0:
        result["error"] = (done.stdout + done.stderr)[-2000:]
        return result
    losses = result["losses"]
    quarter = max(1, len(losses) // 4)
    result["first_losses_mean"] = sum(losses[:quarter]) / quarter
    result["last_losses_mean"] = sum(losses[-quarter:]) / quarter
    result["loss_falls"] = result["last_losses_mean"] < result["first_losses_mean"]
    adapter = Path(result["adapter"]) if result["adapter"] else None
    result["adapter_saved"] = adapter is not None and (adapter / "adapter_model.safetensors").is_file()
    if result["adapter_saved"] and result["val_loss"] is not None:
        reloaded = reloaded_val_loss(path, adapter, mode.device)
        result["reloaded_val_loss"] = reloaded
        gap = abs(reloaded - result["val_loss"])
        result["reload_gap"] = gap
        result["reload_matches"] = gap <= mode.reload_tolerance * abs(result["val_loss"])
    return result


def reloaded_val_loss(config_path: Path, adapter: Path, device_name: str) -> float:
    """The run's validation loss from its saved adapter, loaded into a fresh base model on ``device``.

    Same validation split, micro-batches and padding as the training worker; the whole model in bf16 when the run
    was (FSDP2's mixed precision computes base and adapter in bf16)."""
    import torch

    from comol import load_adapter
    from orchestration.data.batching import collate, eval_shard
    from orchestration.models import load_model, load_tokenizer
    from orchestration.training.config import load_config
    from orchestration.training.setup import build_data
    from orchestration.training.step import token_loss_sum

    config = load_config(config_path)
    device = torch.device(device_name)
    tokenizer = load_tokenizer(config.model)
    val = build_data(config, tokenizer).val
    model, _ = load_adapter(load_model(config.model), str(adapter))
    model = model.to(device, dtype=torch.bfloat16 if config.bf16 else torch.float32).eval()
    total = count = 0.0
    with torch.no_grad():
        for indices in eval_shard(len(val), 0, 1, config.micro_batch_size):
            batch = {k: v.to(device) for k, v in collate(val, indices, tokenizer.pad_token_id).items()}
            loss_sum, n = token_loss_sum(model, batch)
            total, count = total + float(loss_sum), count + float(n)
    return total / max(count, 1.0)


# --- 3. training-step benchmark -------------------------------------------------------------------------------


def run_step_benchmark(mode: Mode, work: Path, env: dict[str, str]) -> dict[str, Any]:
    config_path = work / "step_model.json"
    config_path.write_text(json.dumps(mode.step_model, indent=2))
    out = work / "train_step.json"
    command = [sys.executable, str(REPO / "benchmarks" / "train_step.py"), "--device", mode.device]
    command += ["--model-config", str(config_path), "--json", str(out), *mode.step_args]
    log(f"$ {' '.join(command)}")
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=mode.step_timeout_s, check=False
    )
    print(done.stdout, flush=True)
    if done.returncode != 0 or not out.is_file():
        return {"exit_code": done.returncode, "error": (done.stdout + done.stderr)[-2000:]}
    return {"exit_code": 0, **json.loads(out.read_text())}


# --- the run --------------------------------------------------------------------------------------------------


def step(name: str, results: dict[str, Any], function, *args) -> None:
    """Run one step; a failure is recorded (with its reason) and the next step still runs."""
    log(f"--- {name}")
    start = time.perf_counter()
    try:
        results[name] = function(*args)
    except subprocess.TimeoutExpired as err:
        results[name] = {"error": f"timed out after {err.timeout} s"}
    except Exception as err:
        results[name] = {"error": f"{type(err).__name__}: {err}"}
    results[name]["step_seconds"] = time.perf_counter() - start


def checks(results: dict[str, Any], mode: Mode) -> dict[str, bool]:
    train, bench, found = results.get("train", {}), results.get("step_benchmark", {}), results.get("versions", {})
    methods = bench.get("methods", {})
    return {
        "versions_read": bool(found.get("torch")) and (mode.name == "cpu" or bool(found.get("nccl"))),
        "train_finished": train.get("exit_code") == 0,
        "loss_falls": bool(train.get("loss_falls")),
        "adapter_saved": bool(train.get("adapter_saved")),
        "reload_matches": bool(train.get("reload_matches")),
        "step_benchmark_ran": {"lora", "comol"} <= set(methods),
        "mfu_in_range": all(m.get("mfu") is not None and 0 < m["mfu"] < 1 for m in methods.values()) and bool(methods),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="smoke mode: CPU, tiny sizes, seconds")
    parser.add_argument("--out", type=Path, required=True, help="the JSON of results")
    parser.add_argument("--work-dir", type=Path, default=None, help="configs, logs and runs (default: a temp dir)")
    args = parser.parse_args(argv)
    mode = CPU if args.cpu else GPU
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="comol-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    # Offline (nothing may download); SmolLM2's conversion cached once for the workers and this process's reload.
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    os.environ.setdefault("COMOL_CACHE_DIR", str(work / "cache"))
    env = {**os.environ, **mode.extra_env, "RAY_ADDRESS": ""}  # a private local Ray, never a shared one
    started = time.perf_counter()
    results: dict[str, Any] = {"mode": mode.name, "work_dir": str(work)}
    step("versions", results, versions)
    log(json.dumps(results["versions"]))
    if mode.name == "cuda" and not results["versions"].get("cuda_available"):
        results["error"] = "no CUDA device visible to torch: run with --cpu for the smoke mode"
    else:
        step("train", results, run_train, mode, work, env)
        step("step_benchmark", results, run_step_benchmark, mode, work, env)
    results["checks"] = checks(results, mode)
    results["ok"] = all(results["checks"].values())
    results["elapsed_s"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str))
    failed = [name for name, passed in results["checks"].items() if not passed]
    log(f"{'all checks passed' if not failed else 'FAILED: ' + ', '.join(failed)}; results in {args.out}")
    return 0 if results["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
