"""``comol report``: a sweep's seed-aggregated tables, significance tests and plots, read from MLflow.

The files go to a local folder and, as artifacts under ``report/``, onto the sweep's parent run, so the
MLflow UI shows the report next to the runs it summarises.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from orchestration.report.build import Report, build_report
from orchestration.report.plots import make_plots
from orchestration.report.render import csv_frame, latex, markdown
from orchestration.tracking import schema
from orchestration.tracking.reader import SweepRecord, load_sweep
from orchestration.tracking.store import open_store

FILES = {"markdown": "report.md", "csv": "report.csv", "latex": "report.tex"}


@dataclass
class ReportOutput:
    report: Report
    directory: Path
    files: list[Path]  # every file written, plots included
    plots: list[Path]
    skipped: list[str]  # plots not drawn, with the reason
    logged_to: str | None  # the parent run id the files were logged on


def write_report(report: Report, directory: Path) -> ReportOutput:
    """Write Markdown, CSV, LaTeX and the plots into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    plots, skipped = make_plots(report, directory / "plots")
    relative = [str(p.relative_to(directory)) for p in plots]
    report.notes.extend(skipped)
    (directory / FILES["markdown"]).write_text(markdown(report, relative), encoding="utf-8")
    csv_frame(report).to_csv(directory / FILES["csv"])
    (directory / FILES["latex"]).write_text(latex(report), encoding="utf-8")
    files = [directory / name for name in FILES.values()] + plots
    return ReportOutput(report, directory, files, plots, skipped, None)


def run_report(
    sweep: str,
    tracking_uri: str | None = None,
    out: Path | None = None,
    reference: str | None = None,
    log: bool = True,
) -> ReportOutput:
    """Read the sweep from MLflow, build and write the report, and log it on the sweep's parent run.

    Everything that can fail on bad input (unknown sweep, no finished runs, no metrics, unknown
    reference) fails before anything is logged.
    """
    client = open_store(tracking_uri)
    record: SweepRecord = load_sweep(client, sweep)
    report = build_report(record, reference)
    output = write_report(report, Path(out) if out else Path("outputs") / "reports" / _safe(sweep))
    if log:
        for path in output.files:  # only what this report wrote, not whatever else lies in --out
            subdir = path.parent.relative_to(output.directory).as_posix()
            artifact_path = schema.REPORT_DIR if subdir == "." else f"{schema.REPORT_DIR}/{subdir}"
            client.log_artifact(record.parent_run_id, str(path), artifact_path=artifact_path)
        output.logged_to = record.parent_run_id
    return output


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


__all__ = ["Report", "ReportOutput", "build_report", "load_sweep", "run_report", "write_report"]
