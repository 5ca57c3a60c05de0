"""Write a real sweep record to a real MLflow server, exactly as ``orchestration.tracking.schema`` lays it out.

No fakes: every child run carries a real adapter (PEFT layout) saved from a tiny model whose base lives
in a local folder (``save_pretrained``), the params/tags/metrics the sweep writer logs, and chosen metric
values so the tests know the right answers. ``trial_model`` rebuilds any trial's exact model.
"""

from __future__ import annotations

import tempfile
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from tiny_models import tiny_model

from comol import count_cost, inject_adapter, make_config, save_adapter
from orchestration.models import load_model
from orchestration.tracking import schema

BENCHMARKS = ("addsub", "gsm8k", "svamp")


def char_tokenizer():
    """A character-level fast tokenizer (100 ids, fits the tiny model's 128) built offline."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]  # ids 0..3; LlamaConfig's defaults are bos=1, eos=2
    chars = [chr(c) for c in range(32, 127)] + ["\n"]
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def save_tiny_base(directory: Path) -> Path:
    """A tiny Llama and its tokenizer saved with save_pretrained: the base a local path names."""
    model = tiny_model("llama", seed=0, max_position_embeddings=512)  # room for the Alpaca prompt in characters
    model.save_pretrained(directory, safe_serialization=True)
    char_tokenizer().save_pretrained(directory)
    return directory


def trial_config(base: Path, method: str, adapter: dict, seed: int) -> dict:
    """The resolved trial config as the sweep writer records it (nested; seeds under training/data)."""
    return {
        "name": "report-test",
        "model": str(base),
        "method": method,
        "adapter": dict(adapter),
        "training": {"seed": seed, "lr": 1e-4, "batch_size": 4, "max_steps": 2},
        "data": {"source": "arithmetic", "size": 32},
    }


def trial_model(base: Path, method: str, adapter: dict, seed: int):
    """The model a trial ends with: the base plus an adapter whose weights are a function of the seed
    (non-zero B, so the adapter really changes the outputs). Thread-safe (``write_sweep`` uses threads)."""
    model = load_model(str(base))
    config = make_config(method, base_model_name_or_path=str(base), **adapter)
    inject_adapter(model, config)
    generator = torch.Generator().manual_seed(10_000 + seed * 17 + hash_config(method, adapter))
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return model.eval(), config


def hash_config(method: str, adapter: dict) -> int:
    return int(schema.config_id({"method": method, "adapter": adapter})[:6], 16)


@dataclass
class Trial:
    method: str
    adapter: dict
    averages: list[float]  # eval/average per seed; the per-benchmark values are spread around it
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


@dataclass
class WrittenRun:
    run_id: str
    config_id: str
    seed: int
    method: str
    adapter: dict
    metrics: dict[str, float]


def benchmark_values(average: float, rng: np.random.Generator) -> dict[str, float]:
    """Three accuracies whose unweighted mean is ``average`` (as the evaluation logs eval/average)."""
    d1, d2 = rng.uniform(-0.04, 0.04, size=2)
    values = [average + d1, average + d2, average - d1 - d2]
    return {schema.accuracy_metric(b): float(v) for b, v in zip(BENCHMARKS, values, strict=True)}


def write_sweep(
    client, sweep: str, base: Path, trials: list[Trial], extra_unfinished: bool = True
) -> tuple[str, list[WrittenRun]]:
    """A parent run and one FINISHED child per (trial, seed), plus (optionally) a FAILED child with a
    higher score than anything, which a reader must leave out. Runs are written by a few threads: the
    server round trips, not the CPU, are the cost."""
    from concurrent.futures import ThreadPoolExecutor

    experiment_id = client.create_experiment(schema.experiment_name(sweep))
    parent = client.create_run(
        experiment_id, tags={schema.ROLE: schema.ROLE_SWEEP, schema.SWEEP: sweep}, run_name=sweep
    ).info.run_id
    jobs = [
        (trial, seed, average) for trial in trials for seed, average in zip(trial.seeds, trial.averages, strict=True)
    ]
    with tempfile.TemporaryDirectory() as tmp:

        def write_one(job: tuple[Trial, int, float]) -> WrittenRun:
            trial, seed, average = job
            config = trial_config(base, trial.method, trial.adapter, seed)
            cid = schema.config_id(config)
            model, adapter_config = trial_model(base, trial.method, trial.adapter, seed)
            cost = count_cost(model)
            rng = np.random.default_rng(zlib.crc32(f"{sweep}/{cid}/{seed}".encode()))
            metrics = {
                **benchmark_values(average, rng),
                schema.METRIC_AVERAGE: average,
                schema.METRIC_TRAINABLE: float(cost.trainable),
                schema.METRIC_FLOPS: float(cost.adapter_flops_per_token),
                schema.METRIC_TRAIN_TIME: 10.0 + seed + trial.adapter["r"],
            }
            tags = {
                schema.ROLE: schema.ROLE_TRIAL,
                schema.SWEEP: sweep,
                schema.CONFIG_ID: cid,
                schema.SEED: str(seed),
                schema.METHOD: trial.method,
                schema.BASE_MODEL: str(base),
                schema.PARENT_RUN_ID: parent,
            }
            run_id = client.create_run(experiment_id, tags=tags, run_name=f"{cid}-s{seed}").info.run_id
            client.log_batch(
                run_id,
                params=[_param(k, v) for k, v in schema.flatten(config).items()],
                metrics=[_metric(k, v) for k, v in metrics.items()] + [_metric("train/loss", 2.0, step=1)],
            )
            folder = Path(tmp) / run_id
            save_adapter(model, folder / schema.ADAPTER_ARTIFACT, adapter_config)
            (folder / "config").mkdir()
            (folder / schema.CONFIG_ARTIFACT).write_text(yaml.safe_dump(config))
            client.log_artifacts(run_id, str(folder))  # adapter/ and config/trial.yaml
            client.set_terminated(run_id, "FINISHED")
            return WrittenRun(run_id, cid, seed, trial.method, trial.adapter, metrics)

        with ThreadPoolExecutor(max_workers=4) as pool:
            written = list(pool.map(write_one, jobs))
    if extra_unfinished:
        trial = trials[0]
        config = trial_config(base, trial.method, trial.adapter, 99)
        tags = {
            schema.ROLE: schema.ROLE_TRIAL,
            schema.SWEEP: sweep,
            schema.CONFIG_ID: schema.config_id(config),
            schema.SEED: "99",
            schema.METHOD: trial.method,
            schema.PARENT_RUN_ID: parent,
        }
        run_id = client.create_run(experiment_id, tags=tags).info.run_id
        client.log_metric(run_id, schema.METRIC_AVERAGE, 0.99)
        client.set_terminated(run_id, "FAILED")
    client.set_terminated(parent, "FINISHED")
    return parent, written


def _param(key: str, value: str):
    from mlflow.entities import Param

    return Param(key, value)


def _metric(key: str, value: float, step: int = 0):
    import time

    from mlflow.entities import Metric

    return Metric(key, value, int(time.time() * 1000), step)


# --- the sweeps the report tests share (written once per server) ------------------------------------------
SWEEP_A_TRIALS = [
    # LoRA r=4 holds the best single seed (0.71) but not the best mean: promotion must not pick it.
    Trial("lora", {"r": 4}, [0.50, 0.52, 0.71]),
    Trial("lora", {"r": 8}, [0.53, 0.55, 0.54]),
    Trial("comol", {"r": 4, "num_experts": 2}, [0.58, 0.60, 0.59]),
    # The best mean (0.62); its median seed is seed 2 (0.62), not the middle seed index.
    Trial("comol", {"r": 4, "num_experts": 4}, [0.64, 0.60, 0.62]),
    Trial("comol", {"r": 4, "num_experts": 4, "core_routing": False}, [0.55, 0.56, 0.58]),
    Trial("comol", {"r": 4, "num_experts": 2, "core_routing": False}, [0.54, 0.57, 0.55]),
]
# Two seeds only (the warning), one CoMoL expert count (a skipped plot), a better mean than sweep A.
SWEEP_B_TRIALS = [
    Trial("comol", {"r": 8, "num_experts": 4}, [0.70, 0.72], seeds=[0, 1]),
    Trial("lora", {"r": 4}, [0.50, 0.52], seeds=[0, 1]),
]


@dataclass
class BuiltSweep:
    name: str
    parent_run_id: str
    runs: list[WrittenRun]
    base: Path
    trials: list[Trial]


def build_sweep(server_uri: str, base: Path, which: str) -> BuiltSweep:
    """Sweep ``a`` (three seeds, plus a FAILED run to leave out) or ``b`` (fewer seeds) on this server."""
    from mlflow import MlflowClient

    trials = SWEEP_A_TRIALS if which == "a" else SWEEP_B_TRIALS
    name = f"report-test-{which}-{uuid.uuid4().hex[:8]}"
    parent, runs = write_sweep(MlflowClient(server_uri), name, base, trials, extra_unfinished=which == "a")
    return BuiltSweep(name, parent, runs, base, trials)
