"""Write a real sweep record to a real MLflow server through the product's own writer.

No hand-written tags or params: the sweep is planned from a spec by ``orchestration.sweep.space`` (so every
trial has the config_id, run name and validated config a sweep gives it) and each trial is recorded by
``trainable.record_trial`` with ``SweepTracker`` / ``TrialRecorder``, exactly as a sweep records it. Only the
trial body is the test's: instead of training, it saves an adapter whose weights are a function of the seed
(non-zero B, so it really changes the outputs) and returns chosen metric values, so the tests know the right
answers. ``trial_model`` rebuilds any trial's exact model.
"""

from __future__ import annotations

import tempfile
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tiny_models import save_tiny_model

from comol import inject_adapter, make_config, save_adapter
from orchestration.models import load_model
from orchestration.sweep.runner import summarise
from orchestration.sweep.space import TrialPlan, plan, resolve_trial
from orchestration.sweep.spec import parse_spec
from orchestration.sweep.trainable import SweepContext, TrialOutcome, record_trial
from orchestration.tracking import schema
from orchestration.tracking.writer import SweepTracker, TrialRecorder

BENCHMARKS = ("addsub", "gsm8k", "svamp")


def save_tiny_base(directory: Path) -> Path:
    """The tiny Llama and the tests' tokenizer saved with save_pretrained: the base a local path names."""
    return save_tiny_model(directory)


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


def greedy(model, tokenizer, text: str, max_new_tokens: int) -> str:
    """Greedy decoding by hand (argmax, stop at EOS): the independent expectation for ``comol generate`` and the
    served model."""
    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    new: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            token = int(
                model(input_ids=torch.cat([ids, torch.tensor([new], dtype=torch.long)], dim=1)).logits[0, -1].argmax()
            )
            if token == tokenizer.eos_token_id:
                break
            new.append(token)
    return tokenizer.decode(new, skip_special_tokens=True)


def hash_config(method: str, adapter: dict) -> int:
    return int(schema.config_id({"method": method, "adapter": adapter})[:6], 16)


@dataclass
class Trial:
    method: str
    adapter: dict  # axis values of the configuration (adapter settings by field name)
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


def sweep_spec(sweep: str, base: Path, trials: list[Trial]) -> dict:
    """A grid spec whose variants are the trials' configurations (every trial shares the sweep's seeds)."""
    return {
        "name": sweep,
        "entry": "smoke",
        "seeds": trials[0].seeds,
        "train": {
            "model": str(base),
            "data": {"source": "arithmetic", "size": 32},
            "training": {"lr": 1e-4, "batch_size": 4, "max_steps": 2},
        },
        "search": {"grid": {"variants": [{"method": t.method, **t.adapter} for t in trials]}},
    }


def finished_body(trial: Trial, average: float, sweep: str):
    """A trial body that does not train: the trial's chosen metrics, its seed's adapter and one step of loss."""

    def body(plan: TrialPlan, recorder: TrialRecorder, workdir: Path) -> TrialOutcome:
        model, adapter_config = trial_model(Path(plan.train.model), trial.method, trial.adapter, plan.seed)
        recorder.log_step({"train/loss": 2.0}, 1)
        rng = np.random.default_rng(zlib.crc32(f"{sweep}/{plan.config_id}/{plan.seed}".encode()))
        metrics = {
            **benchmark_values(average, rng),
            schema.METRIC_AVERAGE: average,
            schema.METRIC_TRAIN_TIME: 10.0 + plan.seed + trial.adapter["r"],
        }
        adapter_dir = save_adapter(model, workdir / "adapter", adapter_config)
        return TrialOutcome(metrics, adapter_dir, [], 1, {"train/loss": 2.0})

    return body


def failing_body(plan: TrialPlan, recorder: TrialRecorder, workdir: Path) -> TrialOutcome:
    """A trial that logs a better score than anything, then fails: a reader must leave its run out."""
    recorder.log_step({schema.METRIC_AVERAGE: 0.99}, 1)
    raise RuntimeError("this trial fails after logging a metric")


def write_sweep(
    uri: str, sweep: str, base: Path, trials: list[Trial], extra_unfinished: bool = True
) -> tuple[str, list[WrittenRun]]:
    """The sweep's parent run and one FINISHED child per (trial, seed), plus (optionally) a FAILED child with a
    higher score than anything. Trials are recorded by a few threads: the server round trips are the cost."""
    from concurrent.futures import ThreadPoolExecutor

    spec = parse_spec(sweep_spec(sweep, base, trials))
    with tempfile.TemporaryDirectory() as tmp:
        sweep_plan = plan(spec, f"{tmp}/train")
        tracker = SweepTracker(uri, sweep)
        tracker.ensure_experiment()
        parent = tracker.ensure_parent(spec.model_dump(mode="json"), spec.search.kind, tracker.find_parent())
        context = SweepContext(spec, uri, tracker.experiment_id, parent, tmp, f"{tmp}/train", {})
        seeds = len(spec.seeds)  # the plan lists each variant's seeds in turn
        jobs = [
            (sweep_plan.trials[index * seeds + s], trial, average)
            for index, trial in enumerate(trials)
            for s, average in enumerate(trial.averages)
        ]

        def write_one(job: tuple[TrialPlan, Trial, float]) -> WrittenRun:
            trial_plan, trial, average = job
            recorder = TrialRecorder(context.identity_for(trial_plan)).open()
            metrics = record_trial(context, trial_plan, recorder, finished_body(trial, average, sweep))
            return WrittenRun(
                recorder.run_id, trial_plan.config_id, trial_plan.seed, trial.method, trial.adapter, metrics
            )

        with ThreadPoolExecutor(max_workers=4) as pool:
            written = list(pool.map(write_one, jobs))
        if extra_unfinished:
            failed = resolve_trial(spec, sweep_plan.trials[0].point, 99, {}, f"{tmp}/train")
            recorder = TrialRecorder(context.identity_for(failed)).open()
            try:
                record_trial(context, failed, recorder, failing_body)
            except RuntimeError:
                pass  # as it should: its run ends FAILED
            else:
                raise AssertionError("the failing trial did not fail")
        summarise(tracker, spec, len(sweep_plan.trials))  # as the sweep ends: seed statistics, labels
        tracker.end("FINISHED")
    return parent, written


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
    trials = SWEEP_A_TRIALS if which == "a" else SWEEP_B_TRIALS
    name = f"report-test-{which}-{uuid.uuid4().hex[:8]}"
    parent, runs = write_sweep(server_uri, name, base, trials, extra_unfinished=which == "a")
    return BuiltSweep(name, parent, runs, base, trials)
