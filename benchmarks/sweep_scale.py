"""Orchestration at scale: does a sweep's cost per trial stay flat from tens to hundreds of trials?

On this machine, a cluster as a user runs it: a real PostgreSQL (the dev extras' server binaries), a real
``mlflow server`` on it (proxied artifacts), and a Ray cluster of one head (no CPU) and several worker nodes
started with ``ray start`` (logical CPUs: trials run concurrently, the real cores are shared). On it, the
``comol sweep`` CLI runs the ``smoke`` entry (a tiny model, a couple of optimizer steps: orchestration dominates)
as grids of 30, 150 and 600 trials (configurations = methods × learning rates, × 3 seeds), each size its own
sweep, all sizes side by side in one run. Per size it measures:

- orchestration seconds per trial: ``(W − C/k) / n`` with W the wall time of the ``comol sweep`` process (start to
  exit), C the summed trial compute (``time/compute_s`` of the smoke entry: load, train, evaluate, generate and
  save, without its reporting), k the trial slots (concurrent trials) and n the trials. The "in flight" variant
  takes for W the span from the first trial run's creation to the last one's end (start-up and summary left
  out), and "marginal" is the growth of W − C/k from the previous size, per added trial;
- MLflow requests per trial, counted by the server (its access log), by endpoint;
- ``comol report`` seconds (the process, start to exit), ``--resume`` planning seconds (a resume of the finished
  sweep, from its start to the line saying "0 to run") and the sweep driver's peak memory (its maxrss);
- the record: every planned (config_id, seed) exactly once in MLflow, FINISHED, and nothing else.

    python benchmarks/sweep_scale.py                          # 30, 150, 600 trials on 3 worker nodes × 2 CPUs
    python benchmarks/sweep_scale.py --sizes 30,150           # quicker

Targets: overhead per trial at the largest size ≤ 1.5 × that at the smallest; report ≤ 20 s and resume
planning ≤ 10 s at the largest; no run duplicated or lost. The machine is shared: every figure comes with the
load average (``uptime``) at the time; compare sizes within one run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
VENV_BIN = Path(sys.executable).parent
SEEDS = [0, 1, 2]
METHODS = [{"method": "lora"}, {"method": "comol", "experts": 2}]
# uvicorn's access line: 127.0.0.1:PORT - "POST /api/2.0/mlflow/runs/log-batch HTTP/1.1" 200
ACCESS = re.compile(r'"(?P<verb>[A-Z]+) (?P<path>/[^ ?"]*)[^"]*" (?P<status>\d{3})')
READY = "to run"  # the sweep's plan line: "... N already finished in MLflow, 0 to run"


def load() -> str:
    """The 1-minute load average, as ``uptime`` prints it."""
    return f"{os.getloadavg()[0]:.1f}"


def endpoint(verb: str, path: str) -> str:
    """A request's kind: ``runs/search``, ``artifacts PUT``, ..."""
    if "/mlflow-artifacts/" in path:
        return f"artifacts {verb}"
    return re.sub(r"^/(ajax-)?api/[0-9.]+/mlflow/", "", path)


@dataclass
class Requests:
    """The MLflow server's access log, read from an offset on: what a command cost the server."""

    log: Path
    offset: int = 0

    def mark(self) -> None:
        self.offset = self.log.stat().st_size

    def since_mark(self) -> Counter:
        with self.log.open("rb") as handle:
            handle.seek(self.offset)
            text = handle.read().decode(errors="replace")
        counts: Counter = Counter()
        for match in ACCESS.finditer(text):
            counts[endpoint(match["verb"], match["path"])] += 1
        return counts


@dataclass
class Timed:
    wall: float
    marker_s: float | None  # seconds until the marker line appeared
    maxrss_mb: float
    returncode: int
    output: str


def run_timed(command: list[str], env: dict[str, str], log: Path, marker: str | None = None) -> Timed:
    """Run a command, timing it to its exit (and to the first line containing ``marker``); its own peak RSS."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, cwd=log.parent, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen = None
    lines = []
    with log.open("w") as out:
        for line in process.stdout:
            out.write(line)
            lines.append(line)
            if marker is not None and seen is None and marker in line:
                seen = time.perf_counter() - started
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return Timed(wall, seen, usage.ru_maxrss / 1024, process.returncode, "".join(lines))


def spec_for(name: str, trials: int, model: Path, steps: int) -> dict[str, Any]:
    """``trials`` = methods × learning rates × seeds of the smoke entry: a grid that holds 200 configurations."""
    per_method = trials // (len(SEEDS) * len(METHODS))
    if per_method * len(SEEDS) * len(METHODS) != trials:
        raise SystemExit(f"--sizes: {trials} is not a multiple of {len(SEEDS) * len(METHODS)} (methods × seeds)")
    lrs = [float(f"{1e-4 * 100 ** (i / max(per_method - 1, 1)):.6g}") for i in range(per_method)]
    return {
        "name": name,
        "entry": "smoke",
        "seeds": SEEDS,
        "metric": "eval/average",
        "mode": "max",
        "train": {
            "model": str(model),
            "adapter": {"target_modules": ["q_proj", "v_proj"]},
            "data": {"size": 16},
            "training": {"max_steps": steps, "batch_size": 2},
            "logging": {"log_every": steps},
        },
        "search": {"grid": {"variants": METHODS, "lr": lrs}},
    }


@dataclass
class SizeResult:
    trials: int
    slots: int
    sweep: Timed
    compute_s: float
    in_flight_s: float
    sweep_requests: Counter
    resume: Timed
    resume_requests: Counter
    report: Timed
    report_requests: Counter
    record_ok: bool
    record_note: str
    dry_run: Timed  # `comol sweep --dry-run` of the same spec: interpreter, imports and planning, no MLflow
    loads: dict[str, str] = field(default_factory=dict)

    @property
    def overhead(self) -> float:
        return (self.sweep.wall - self.compute_s / self.slots) / self.trials

    @property
    def overhead_in_flight(self) -> float:
        return (self.in_flight_s - self.compute_s / self.slots) / self.trials

    def figures(self) -> dict[str, Any]:
        """Everything measured, as JSON (``--json``)."""
        return {
            "trials": self.trials,
            "slots": self.slots,
            "sweep_wall_s": self.sweep.wall,
            "compute_s": self.compute_s,
            "in_flight_s": self.in_flight_s,
            "overhead_s_per_trial": self.overhead,
            "overhead_in_flight_s_per_trial": self.overhead_in_flight,
            "sweep_requests": dict(self.sweep_requests),
            "driver_peak_rss_mb": self.sweep.maxrss_mb,
            "resume_planning_s": self.resume.marker_s,
            "resume_wall_s": self.resume.wall,
            "resume_requests": dict(self.resume_requests),
            "dry_run_s": self.dry_run.wall,
            "report_s": self.report.wall,
            "report_requests": dict(self.report_requests),
            "record_ok": self.record_ok,
            "record_note": self.record_note,
            "loads": self.loads,
        }


def check_record(uri: str, name: str, planned: set[tuple[str, int]]) -> tuple[bool, str, float, float]:
    """(every planned (config_id, seed) exactly once and FINISHED, note, Σ compute, in-flight span)."""
    from mlflow import MlflowClient

    from orchestration.sweep.smoke import METRIC_COMPUTE_TIME
    from orchestration.tracking import schema
    from orchestration.tracking.queries import runs_filter, search_all

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(schema.experiment_name(name))
    runs = search_all(client, experiment.experiment_id, runs_filter(schema.ROLE_TRIAL, name))
    keys = Counter((r.data.tags[schema.CONFIG_ID], int(r.data.tags[schema.SEED])) for r in runs)
    duplicated = sum(1 for count in keys.values() if count > 1)
    lost = len(planned - set(keys))
    extra = len(set(keys) - planned)
    unfinished = sum(1 for r in runs if r.info.status != "FINISHED")
    note = f"{len(runs)} runs: {duplicated} duplicated, {lost} lost, {extra} unplanned, {unfinished} not FINISHED"
    ok = len(runs) == len(planned) and not (duplicated or lost or extra or unfinished)
    compute = sum(r.data.metrics.get(METRIC_COMPUTE_TIME, 0.0) for r in runs)
    span = max(r.info.end_time or 0 for r in runs) - min(r.info.start_time for r in runs)
    return ok, note, compute, span / 1000


def run_size(n: int, args: argparse.Namespace, stack: Any, work: Path, model: Path) -> SizeResult:
    from orchestration.sweep.runner import prepare_spec
    from orchestration.sweep.spec import parse_spec

    folder = work / f"n{n}"
    folder.mkdir()
    name = f"scale-{n}-{uuid.uuid4().hex[:6]}"
    spec = spec_for(name, n, model, args.steps)
    spec_path = folder / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    _, _, plan = prepare_spec(parse_spec(spec), str(folder / "sweep"))
    planned = {(t.config_id, t.seed) for t in plan.trials}
    assert len(planned) == n, (len(planned), n)
    env = stack.ray.client_env(HF_HUB_OFFLINE="1")
    sweep = [str(VENV_BIN / "comol"), "sweep", str(spec_path), "--tracking-uri", stack.mlflow.uri,
             "--output-dir", str(folder / "sweep"), "--address", stack.ray.address]  # fmt: skip
    requests = Requests(stack.mlflow.root / "server.log")
    loads = {"before": load()}

    dry_run = run_timed([*sweep, "--dry-run"], env, folder / "dry_run.log")
    if dry_run.returncode != 0:
        raise SystemExit(f"the dry run of the {n}-trial sweep failed:\n{dry_run.output[-3000:]}")
    requests.mark()
    ran = run_timed(sweep, env, folder / "sweep.log")
    sweep_requests = requests.since_mark()
    loads["sweep"] = load()
    if ran.returncode != 0:
        raise SystemExit(f"the {n}-trial sweep failed ({ran.returncode}):\n{ran.output[-4000:]}")
    ok, note, compute, span = check_record(stack.mlflow.uri, name, planned)

    requests.mark()
    resumed = run_timed([*sweep, "--resume"], env, folder / "resume.log", marker=READY)
    resume_requests = requests.since_mark()
    loads["resume"] = load()
    if (
        resumed.returncode != 0
        or resumed.marker_s is None
        or f"{n} already finished in MLflow, 0 to run" not in (resumed.output)
    ):
        raise SystemExit(f"the resume of the {n}-trial sweep did not find every trial done:\n{resumed.output[-3000:]}")

    requests.mark()
    report = [str(VENV_BIN / "comol"), "report", name, "--tracking-uri", stack.mlflow.uri, "--out", str(folder / "rep")]
    reported = run_timed(report, env, folder / "report.log")
    report_requests = requests.since_mark()
    loads["report"] = load()
    if reported.returncode != 0:
        raise SystemExit(f"comol report failed:\n{reported.output[-3000:]}")
    ok_after, note_after, _, _ = check_record(stack.mlflow.uri, name, planned)  # the resume added nothing
    slots = args.worker_nodes * args.cpus_per_worker  # a smoke trial holds one CPU
    return SizeResult(
        n, slots, ran, compute, span, sweep_requests, resumed, resume_requests, reported, report_requests,
        ok and ok_after, note if ok_after else f"after resume: {note_after}", dry_run, loads,
    )  # fmt: skip


def print_table(results: list[SizeResult], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 140))
    first, last = results[0], results[-1]
    title = (
        f"comol sweep of the smoke entry ({args.steps} steps) on 1 head + {args.worker_nodes} worker nodes × "
        f"{args.cpus_per_worker} logical CPUs, MLflow on PostgreSQL ({args.mlflow_workers} server workers); "
        f"{os.cpu_count()} real cores"
    )
    table = Table(title=title)
    table.add_column("figure")
    for r in results:
        table.add_column(f"{r.trials} trials", justify="right")
    table.add_column(f"{last.trials} / {first.trials}", justify="right")

    def row(label: str, values: list[float], fmt: str = "{:.2f}", ratio: bool = True) -> None:
        cells = [fmt.format(v) for v in values]
        share = f"{values[-1] / values[0]:.2f}×" if ratio and values[0] else ""
        table.add_row(label, *cells, share)

    row("trial slots k (concurrent trials)", [r.slots for r in results], "{:.0f}", ratio=False)
    row("sweep wall W, s", [r.sweep.wall for r in results], "{:.1f}")
    row("Σ trial compute C, s", [r.compute_s for r in results], "{:.1f}")
    row("  mean compute per trial, s", [r.compute_s / r.trials for r in results])
    row("orchestration s/trial: (W − C/k) / n", [r.overhead for r in results])
    row("  in flight (first run created → last ended)", [r.overhead_in_flight for r in results])
    marginal = [float("nan")] + [
        ((b.sweep.wall - b.compute_s / b.slots) - (a.sweep.wall - a.compute_s / a.slots)) / (b.trials - a.trials)
        for a, b in itertools.pairwise(results)
    ]
    row("  marginal: Δ(W − C/k) / Δn from the previous size", marginal, ratio=False)
    row("MLflow requests per trial (sweep)", [sum(r.sweep_requests.values()) / r.trials for r in results], "{:.1f}")
    kinds = sorted({k for r in results for k in r.sweep_requests}, key=lambda k: -last.sweep_requests[k])
    for kind in kinds:
        row(f"  {kind}", [r.sweep_requests[kind] / r.trials for r in results], "{:.2f}", ratio=False)
    row("comol report, s", [r.report.wall for r in results], "{:.1f}")
    row("  MLflow requests", [sum(r.report_requests.values()) for r in results], "{:.0f}")
    row("--resume: start → '0 to run', s", [r.resume.marker_s for r in results], "{:.1f}")
    row("  whole resume process, s", [r.resume.wall for r in results], "{:.1f}")
    row("  MLflow requests", [sum(r.resume_requests.values()) for r in results], "{:.0f}")
    row("    of them runs/search", [r.resume_requests["runs/search"] for r in results], "{:.0f}", ratio=False)
    row("  --dry-run (start-up, imports, planning; no MLflow), s", [r.dry_run.wall for r in results], "{:.1f}")
    row("sweep driver peak RSS, MB", [r.sweep.maxrss_mb for r in results], "{:.0f}")
    table.add_row("record (every (config_id, seed) once)", *[("OK " if r.record_ok else "BAD ") for r in results], "")
    for stage in ("sweep", "resume", "report"):
        table.add_row(f"load average after {stage}", *[r.loads[stage] for r in results], "")
    console.print(table)
    for r in results:
        console.print(f"{r.trials} trials: {r.record_note}; load before {r.loads['before']}")
    checks = [
        (
            f"orchestration s/trial at {last.trials} ≤ 1.5 × at {first.trials}",
            last.overhead <= 1.5 * first.overhead,
            f"{last.overhead:.2f} vs {first.overhead:.2f} (in flight: {last.overhead_in_flight:.2f} vs "
            f"{first.overhead_in_flight:.2f})",
        ),
        (f"comol report over {last.trials} runs ≤ 20 s", last.report.wall <= 20, f"{last.report.wall:.1f} s"),
        (
            f"resume planning over {last.trials} runs ≤ 10 s",
            last.resume.marker_s <= 10,
            f"{last.resume.marker_s:.1f} s; a --dry-run of the same spec {last.dry_run.wall:.1f} s",
        ),
        ("no run duplicated or lost", all(r.record_ok for r in results), "; ".join(r.record_note for r in results)),
    ]
    for label, ok, detail in checks:
        console.print(f"{'meets' if ok else 'MISSES'}: {label} ({detail})")
    console.print(
        "definitions: W = wall time of the `comol sweep` process; C = Σ time/compute_s (the smoke body's own work: "
        "load, train, evaluate, generate, save; its MLflow/Tune reporting excluded); k = trial slots; "
        "n = trials. In flight: W = last trial run's end − first trial run's start (MLflow times)."
    )


@dataclass
class Stack:
    mlflow: Any
    ray: Any
    postgres: Any

    def stop(self) -> None:
        for part in (self.ray, self.mlflow, self.postgres):
            if part is not None:
                part.stop()


def start_stack(args: argparse.Namespace, root: Path) -> Stack:
    sys.path[:0] = [str(TESTS), str(TESTS / "cluster")]
    from cluster_servers import start_postgres, start_ray_cluster
    from servers import start_mlflow_server

    postgres = start_postgres()
    stack = Stack(None, None, postgres)
    try:
        postgres.create_database("mlflow")
        uri = postgres.sqlalchemy_uri("mlflow")
        stack.mlflow = start_mlflow_server(
            root / "mlflow", timeout=300, backend_store_uri=uri, workers=args.mlflow_workers
        )
        stack.ray = start_ray_cluster(
            {"HF_HUB_OFFLINE": "1"}, worker_cpus=args.cpus_per_worker, worker_nodes=args.worker_nodes
        )
    except BaseException:
        stack.stop()
        raise
    return stack


def main(argv: list[str] | None = None) -> list[SizeResult]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="30,150,600", help="trials per sweep, comma-separated (multiples of 6)")
    parser.add_argument("--worker-nodes", type=int, default=3, help="Ray worker nodes (ray start), besides the head")
    parser.add_argument("--cpus-per-worker", type=int, default=2, help="logical CPUs of each worker node")
    parser.add_argument("--mlflow-workers", type=int, default=2, help="mlflow server worker processes")
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps per smoke trial")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, reports, specs)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure, per size, to this file")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    root = Path(tempfile.mkdtemp(prefix="comol-scale-"))
    print(f"work folder {root}; load average {load()}", flush=True)
    stack = None
    try:
        sys.path.insert(0, str(TESTS))
        from tiny_models import save_tiny_model

        model = save_tiny_model(root / "model")
        started = time.perf_counter()
        stack = start_stack(args, root)
        print(f"PostgreSQL, mlflow server and Ray cluster up in {time.perf_counter() - started:.0f} s", flush=True)
        results = []
        for n in sizes:
            result = run_size(n, args, stack, root, model)
            print(
                f"{n} trials: sweep {result.sweep.wall:.0f} s, resume {result.resume.marker_s:.1f} s, report "
                f"{result.report.wall:.1f} s, load {result.loads['sweep']}",
                flush=True,
            )
            results.append(result)
        print_table(results, args)
        if args.json is not None:
            args.json.write_text(json.dumps([r.figures() for r in results], indent=2))
    finally:
        if stack is not None:
            stack.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
