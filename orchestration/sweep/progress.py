"""Sweep progress in the terminal (rich) and the driver-side bookkeeping of early-stopped trials.

Tune calls these hooks in the sweep driver. A line per trial event works in a terminal and in the log of
a ``ray job submit``; the live bar is shown only on a terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ray import tune
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestration.sweep.space import TrialPlan, label_params
from orchestration.sweep.trainable import METRIC_CACHED, SweepContext
from orchestration.tracking import schema
from orchestration.tracking.labels import base_label
from orchestration.tracking.writer import TrialRecorder


def describe(plan: TrialPlan, shown: Sequence[str] = ()) -> str:
    """A trial in one line: its configuration's label (plus the ``shown`` params, e.g. the swept ones) and seed,
    ``CoMoL r=8 N=4 lr=0.001 seed=1``."""
    params = schema.flatten(plan.train.model_dump(mode="json"))
    return f"{base_label(plan.method, params, shown)} seed={plan.seed}"


class SweepProgress(tune.Callback):
    def __init__(self, context: SweepContext, total: int, already_done: int, metric: str, console: Console):
        self.context = context
        self.shown = label_params(context.spec)
        self.metric = metric
        self.console = console
        self.completed = already_done
        self.failed = 0
        self.pruned = 0
        self._plans: dict[str, TrialPlan] = {}
        self._started: set[str] = set()
        self._bar: Progress | None = None
        self._task: Any = None
        if console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            )
            self._task = self._bar.add_task("trials", total=total, completed=already_done)
            self._bar.start()

    def __getstate__(self) -> dict[str, Any]:
        """Tune pickles its callbacks with the experiment state: leave the terminal objects out."""
        state = dict(self.__dict__)
        state.update(console=None, _bar=None, _task=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.console = Console()

    def _plan(self, trial: Any) -> TrialPlan:
        if trial.trial_id not in self._plans:
            self._plans[trial.trial_id] = self.context.plan_for(dict(trial.config))
        return self._plans[trial.trial_id]

    def _advance(self) -> None:
        self.completed += 1
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id in self._started:  # Tune reports a reused actor's start again
            return
        self._started.add(trial.trial_id)
        plan = self._plan(trial)
        self.console.print(f"[cyan]▶ start[/]  {describe(plan, self.shown)}  [dim]({plan.key})[/]")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        plan = self._plan(trial)
        result = trial.last_result or {}
        if result.get(METRIC_CACHED) == 1:
            note = "[dim]already finished in MLflow, not re-run[/]"
        elif self.metric in result and result.get(METRIC_CACHED) == 0:
            note = ""
        else:  # stopped by the scheduler before it finished: record that in its run
            self._mark_pruned(plan)
            self.pruned += 1
            note = "[yellow]stopped early (ASHA)[/]"
        value = result.get(self.metric)
        shown = f"{self.metric}={value:.4g}" if isinstance(value, (int, float)) else ""
        self.console.print(f"[green]✔ done[/]   {describe(plan, self.shown)}  {shown} {note}")
        self._advance()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        plan = self._plan(trial)
        self.failed += 1
        error = getattr(trial, "error_file", None) or ""
        self.console.print(f"[red]✘ failed[/] {describe(plan, self.shown)}  [dim]{error}[/]")
        self._advance()

    def _mark_pruned(self, plan: TrialPlan) -> None:
        recorder = TrialRecorder(self.context.identity_for(plan)).open()
        if not recorder.finished:
            recorder.end("KILLED", pruned=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
