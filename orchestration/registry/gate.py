"""The promotion gate: a challenger replaces the champion only when it is better by the report's own test.

The challenger (the sweep's best configuration by seed mean) is compared on the promotion metric with

- the current champion's configuration (its seeds read back from the sweep that promoted it): one comparison
  named in advance, so Welch's test unadjusted, as the report judges a fixed pair;
- LoRA, when the sweep has it: the report's reference row, with the report's Holm-adjusted p (the family of
  comparisons the report corrects for when LoRA is picked as the best of several LoRA rows).

It passes when every comparison there is favours the challenger and is significant at the report's ALPHA. A
comparison without a test (fewer than two seeds a side, no spread) cannot show the challenger is better: the
gate refuses and says so; ``--force`` promotes anyway and the version records that it was forced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from comol.errors import ConfigError
from orchestration.report.significance import ALPHA, Comparison, compare
from orchestration.tracking.labels import configuration_labels
from orchestration.tracking.reader import SweepRecord, load_sweep, logged_metric_name
from orchestration.tracking.seeds import format_mean_std

PASSED = "passed"
FORCED = "forced"


@dataclass(frozen=True)
class Opponent:
    """One comparison of the challenger: with whom, on whose seeds, and the test's verdict."""

    role: str  # "champion" or "LoRA"
    label: str  # the opponent configuration's label (and where it comes from)
    mean: float
    std: float
    test: Comparison  # challenger − opponent
    p: float  # the p the verdict uses (Holm-adjusted for the LoRA row, as the report prints it)
    better: bool  # favours the challenger (by ``mode``) and p < ALPHA

    def line(self) -> str:
        """One sentence for the console and the version description."""
        if self.test.untested:
            return f"vs {self.role}: {self.label} ({format_mean_std(self.mean, self.std)}): {self.test.untested}"
        verdict = "better" if self.better else "not better"
        return (
            f"vs {self.role}: {self.label} ({format_mean_std(self.mean, self.std)}): difference {self.test.diff:+.4f} "
            f"(95% {self.test.interval} CI [{self.test.ci_low:+.4f}, {self.test.ci_high:+.4f}]), p = {self.p:.3g}: "
            f"{verdict} at α = {ALPHA}"
        )


@dataclass
class Decision:
    opponents: list[Opponent] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # comparisons that could not be made, and why

    @property
    def passed(self) -> bool:
        return all(o.better for o in self.opponents)

    def refused_by(self) -> list[str]:
        """The roles of the comparisons the challenger did not win."""
        return [o.role for o in self.opponents if not o.better]

    def reason(self) -> str:
        refused = [o.line() for o in self.opponents if not o.better]
        return "; ".join(refused) if refused else "better than every comparison made"


def _favours(test: Comparison, p: float, mode: str) -> bool:
    if test.untested or math.isnan(p):
        return False
    return (test.diff > 0 if mode == "max" else test.diff < 0) and p < ALPHA


def _seed_values(record: SweepRecord, config_id: str, metric: str) -> list[float]:
    return [t.metrics[metric] for t in record.trials if t.config_id == config_id and metric in t.metrics]


def versus_champion(client, holder, challenger: list[float], metric: str, mode: str) -> Opponent | str:
    """The challenger against the configuration of the current alias holder (a version ``comol promote``
    registered), or why they cannot be compared."""
    from orchestration.registry.promote import TAG_CONFIG_ID, TAG_METRIC, TAG_SWEEP

    tags = holder.tags
    sweep, config_id = tags.get(TAG_SWEEP), tags.get(TAG_CONFIG_ID)
    if not sweep or not config_id:
        return f"version {holder.version} was not promoted by comol (no {TAG_SWEEP}/{TAG_CONFIG_ID} tags)"
    if tags.get(TAG_METRIC) and tags[TAG_METRIC] != metric:
        return f"version {holder.version} was promoted on {tags[TAG_METRIC]}, not {metric}"
    try:
        record = load_sweep(client, sweep)
    except ConfigError as err:
        return f"the champion's sweep cannot be read back ({err})"
    name = logged_metric_name(metric, set().union(*(t.metrics for t in record.trials)))
    values = _seed_values(record, config_id, name)
    if not values:
        return f"the champion's configuration {config_id} has no finished run with {metric} in sweep {sweep!r}"
    labels = configuration_labels((t.config_id, t.method, t.params) for t in record.trials)
    test = compare(challenger, values)
    label = f"v{holder.version} {labels.get(config_id, config_id)} (sweep {sweep})"
    mean, std = float(sum(values) / len(values)), test.var_b**0.5 if test.n_b > 1 else math.nan
    return Opponent("champion", label, mean, std, test, test.p, _favours(test, test.p, mode))


def versus_lora(record: SweepRecord, config_id: str, metric: str, mode: str) -> Opponent | str:
    """The challenger against the report's LoRA reference row, with the report's Holm-adjusted p, or why there
    is no such comparison (no LoRA in the sweep, or the challenger is that LoRA)."""
    from orchestration.report.build import against, build_report

    try:
        report = build_report(record)
    except ConfigError as err:
        return f"no report of this sweep to compare with LoRA ({err})"
    reference = report.reference
    if reference is None:
        return "no comparison with LoRA: the sweep has no LoRA configuration"
    if reference == config_id:
        return "no comparison with LoRA: the challenger is the sweep's LoRA reference"
    adjusted, _ = against(report, metric, reference, report.reference_candidates)
    values = report.seed_values(reference, metric)
    test = compare(report.seed_values(config_id, metric), values)
    p = adjusted.get(config_id, math.nan)
    label = str(report.table.at[reference, "label"])
    std = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return Opponent("LoRA", label, float(values.mean()), std, test, p, _favours(test, p, mode))


def decide(client, record: SweepRecord, choice, holder, metric: str, mode: str) -> Decision:
    """The gate's decision for ``choice`` (promote's Choice) against ``holder`` (the alias's current version, or
    None) and the sweep's LoRA."""
    decision = Decision()
    logged = logged_metric_name(metric, set().union(*(t.metrics for t in record.trials)))
    challenger = _seed_values(record, choice.config_id, logged)
    if holder is not None:
        outcome = versus_champion(client, holder, challenger, metric, mode)
        if isinstance(outcome, Opponent):
            decision.opponents.append(outcome)
        else:  # a champion the gate cannot compare with is not beaten: refuse, say why
            decision.notes.append(f"no comparison with the champion: {outcome}")
            decision.opponents.append(_unmatched("champion", f"v{holder.version}", outcome))
    outcome = versus_lora(record, choice.config_id, logged, mode)
    if isinstance(outcome, Opponent):
        decision.opponents.append(outcome)
    else:
        decision.notes.append(outcome)
    return decision


def _unmatched(role: str, label: str, why: str) -> Opponent:
    nan = math.nan
    test = Comparison(nan, nan, nan, nan, nan, nan, 0, 0, nan, nan, untested=f"no test: {why}")
    return Opponent(role, label, nan, nan, test, nan, False)
