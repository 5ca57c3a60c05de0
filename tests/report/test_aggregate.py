"""The report's aggregation, labels and the seed statistic as pure functions of in-memory records (no MLflow).

The records are ``TrialRun`` s as the reader returns them: params flattened from a trial config, final metrics.
"""

from __future__ import annotations

import math
import statistics

import pandas as pd
import pytest

from orchestration.report.aggregate import aggregate, benchmark_columns, runs_frame
from orchestration.report.build import build_report
from orchestration.report.render import markdown
from orchestration.tracking import labels, schema
from orchestration.tracking.reader import SweepRecord, TrialRun
from orchestration.tracking.seeds import format_mean_std, seed_mean_std

ADDSUB, GSM8K = schema.accuracy_metric("addsub"), schema.accuracy_metric("gsm8k")


def params(method: str, **fields: object) -> dict[str, str]:
    """Flattened params of a trial config (as the writer logs them), with the given adapter/training fields."""
    config = {"method": method, "adapter": {}, "training": {"lr": 1e-4, "seed": 0}, "output_dir": "/runs"}
    for name, value in fields.items():
        section = "training" if name == "lr" else "adapter"
        config[section][name] = value
    return schema.flatten(config)


def trial(cid: str, seed: int, method: str, values: dict[str, float], **fields: object) -> TrialRun:
    run_params = params(method, **fields) | {"training.seed": str(seed), "run_name": f"{cid}-s{seed}"}
    metrics = {**values, schema.METRIC_TRAINABLE: 1000.0 * (1 + len(cid)), schema.METRIC_TRAIN_TIME: 5.0 + seed}
    return TrialRun(f"run-{cid}-{seed}", cid, seed, method, "base", run_params, metrics, "", start_time=seed)


def record(trials: list[TrialRun]) -> SweepRecord:
    return SweepRecord("pure", "memory://", "0", "parent", trials)


# Three configurations: LoRA r=8 (3 seeds), CoMoL r=8 N=4 (3 seeds) and CoMoL w/o CR r=8 N=4 (one seed only).
VALUES = {
    "lora": [(0.50, 0.40), (0.54, 0.42), (0.52, 0.47)],
    "comol": [(0.60, 0.50), (0.61, 0.55), (0.65, 0.52)],
    "nocr": [(0.58, 0.45)],
}
RUNS = [
    *(trial("lora", s, "lora", {ADDSUB: a, GSM8K: g}, r=8) for s, (a, g) in enumerate(VALUES["lora"])),
    *(
        trial("comol", s, "comol", {ADDSUB: a, GSM8K: g}, r=8, num_experts=4)
        for s, (a, g) in enumerate(VALUES["comol"])
    ),
    trial("nocr", 0, "comol", {ADDSUB: 0.58, GSM8K: 0.45}, r=8, num_experts=4, core_routing=False),
]


def test_seed_mean_and_sample_std_per_configuration_and_benchmark():
    frame, columns = runs_frame(record(RUNS))
    assert [c.title for c in columns] == ["AddSub", "GSM8K", "Average"] and columns[-1].computed
    table = aggregate(frame, columns)
    for cid, seeds in VALUES.items():
        for index, metric in enumerate((ADDSUB, GSM8K)):
            values = [pair[index] for pair in seeds]
            assert table.at[cid, f"{metric} mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
            expected_std = statistics.stdev(values) if len(values) > 1 else math.nan
            assert table.at[cid, f"{metric} std"] == pytest.approx(expected_std, rel=1e-9, nan_ok=True)
        averages = [statistics.fmean(pair) for pair in seeds]  # the paper's Average: per run, then over seeds
        assert table.at[cid, f"{schema.METRIC_AVERAGE} mean"] == pytest.approx(statistics.fmean(averages))
        assert table.at[cid, "seeds"] == len(seeds)
        assert table.at[cid, "train_s"] == pytest.approx(statistics.fmean(5.0 + s for s in range(len(seeds))))
    assert table.at["lora", "seed_list"] == "0,1,2"
    assert list(table.index) == ["lora", "comol", "nocr"]  # the paper's order: LoRA, then CoMoL with CR first


def test_one_seed_has_no_spread_everywhere_it_is_shown():
    """One rule for one seed: its std is NaN (never 0), the report shows the mean alone, text shows 'n/a'."""
    assert seed_mean_std([0.7]) == (0.7, pytest.approx(math.nan, nan_ok=True))
    assert math.isnan(seed_mean_std([])[0]) and seed_mean_std([1.0, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))
    assert seed_mean_std([1.0, math.nan, 3.0]) == (2.0, pytest.approx(math.sqrt(2)))  # a missing value is no seed
    assert format_mean_std(0.7, math.nan) == "0.7000 ± n/a" and format_mean_std(0.5, 0.01) == "0.5000 ± 0.0100"
    report = build_report(record(RUNS))
    assert math.isnan(report.table.at["nocr", f"{schema.METRIC_AVERAGE} std"])
    row = next(line for line in markdown(report).splitlines() if line.startswith("| CoMoL w/o CR r=8 N=4"))
    assert " ± " not in row.split(" | ")[2] and "fewer than 3 seeds" in report.warnings[0]


def test_promotion_and_the_sweep_summary_use_the_same_seed_statistic():
    from mlflow.entities import Metric, Param, Run, RunData, RunInfo, RunTag

    from orchestration.registry.promote import choose
    from orchestration.sweep.runner import _summary_rows
    from orchestration.sweep.spec import parse_spec

    runs = [run.__class__(**{**run.__dict__, "metrics": {**run.metrics, "m": run.metrics[ADDSUB]}}) for run in RUNS]
    ranking = choose(record(runs), "m").ranking

    def mlflow_run(run: TrialRun) -> Run:
        info = RunInfo(run.run_id, "0", "u", "FINISHED", 0, 1, "active")
        tags = [RunTag(schema.METHOD, run.method), RunTag(schema.CONFIG_ID, run.config_id)]
        metrics = [Metric(k, v, 0, 0) for k, v in run.metrics.items()]
        return Run(info, RunData(metrics, [Param(k, v) for k, v in run.params.items()], tags))

    spec = parse_spec({"name": "pure", "train": {}, "search": {"grid": {"r": [8]}}, "metric": "m"})
    rows = {row["config_id"]: row for row in _summary_rows({(r.config_id, r.seed): mlflow_run(r) for r in runs}, spec)}
    table = aggregate(*runs_frame(record(runs)))
    for cid in VALUES:
        expected = seed_mean_std(r.metrics["m"] for r in runs if r.config_id == cid)
        for mean, std in (
            (ranking.at[cid, "mean"], ranking.at[cid, "std"]),
            (rows[cid]["mean"], rows[cid]["std"]),
            (table.at[cid, f"{ADDSUB} mean"], table.at[cid, f"{ADDSUB} std"]),
        ):
            assert (mean, std) == pytest.approx(expected, nan_ok=True)
    assert math.isnan(rows["nocr"]["std"])  # the summary no longer shows a single seed's spread as 0
    assert {cid: row["label"] for cid, row in rows.items()} == dict(table["label"])  # one label, everywhere


def test_labels_are_the_papers_row_names_and_tell_configurations_apart():
    base = {
        "a": ("comol", params("comol", r=16, num_experts=8)),
        "b": ("comol", params("comol", r=16, num_experts=8, core_routing=False)),
        "c": ("lora", params("lora", r=16)),
        "d": ("comol", params("comol", r=16, num_experts=8, lr=3e-4)),
        "e": ("mystery", {"method": "mystery"}),
    }
    names = labels.unique_labels({c: m for c, (m, _) in base.items()}, {c: p for c, (_, p) in base.items()})
    assert names["b"] == "CoMoL w/o CR r=16 N=8" and names["c"] == "LoRA r=16" and names["e"] == "mystery"
    assert {names["a"], names["d"]} == {"CoMoL r=16 N=8 lr=0.0001", "CoMoL r=16 N=8 lr=0.0003"}
    # Runs that did not log a setting trained with the method's default: r=16, N=8, CR on.
    assert labels.base_label("comol", labels.shared_params("comol", [{"method": "comol"}])) == "CoMoL r=16 N=8"
    assert labels.base_label("comol", params("comol", r=4, alpha=8.0), extra=["adapter.alpha"]) == "CoMoL r=4 alpha=8"
    seeds = [params("comol", r=4) | {"training.seed": str(s), "output_dir": f"/o/{s}"} for s in range(3)]
    assert "training.seed" not in labels.shared_params("comol", seeds)


def test_columns_follow_the_papers_order_and_read_both_pass_at_spellings():
    names = {"eval/svamp/accuracy", "eval/addsub/accuracy", "eval/humaneval/pass_at_1", "eval/humaneval/pass@10"}
    columns = benchmark_columns(names | {"eval/arithmetic/accuracy", "train/loss"})
    titles = [c.title for c in columns]
    assert titles == ["AddSub", "SVAMP", "arithmetic", "HumanEval pass@1", "HumanEval pass@10", "Average"]
    assert pd.Series([c.computed for c in columns]).tolist() == [False] * 5 + [True]
