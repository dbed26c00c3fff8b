"""How the report states its confidence intervals, and the bootstrap CI of a run's difference to the baseline.

metrics.json rows carry their own CIs (Wilson for rates) and method names; this module turns the methods
into one sentence for the report and resamples two runs' per-sample judgments for the before/after
differences, which have no closed form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vlguard.metrics import (
    CI_BOOTSTRAP,
    CI_LEVEL,
    CI_METHOD_BEFORE_RECORDING,
    CI_WILSON,
    bootstrap_difference_ci,
    metric_values,
)
from vlguard.report.loading import RunData
from vlguard.report.tables import ComparisonRow, is_headline, summary_rows

CI_METHOD_LABELS = {
    CI_WILSON: "Wilson score intervals",
    CI_BOOTSTRAP: "percentile bootstrap intervals",
}


def intervals_note(runs: Sequence[RunData]) -> str:
    """One sentence saying how the report's confidence intervals were made, naming runs when they differ.

    Files written before rows recorded their method are marked as such (their CIs were bootstraps).
    """
    methods: dict[str, list[str]] = {}
    for run in runs:
        for method in dict.fromkeys(
            (row.ci_method or CI_METHOD_BEFORE_RECORDING, row.ci_method is None)
            for row in run.metrics
            if row.ci_low is not None
        ):
            name, unrecorded = method
            label = CI_METHOD_LABELS.get(name, name)
            if unrecorded:
                label += " (method not recorded in this older metrics.json)"
            methods.setdefault(label, []).append(run.label)
    if not methods:
        return "No confidence intervals were recorded."
    if len(runs) == 1 or all(len(labels) == len(runs) for labels in methods.values()):
        parts = list(methods)
    else:
        parts = [f"{label} in {', '.join(labels)}" for label, labels in methods.items()]
    return f"Values with {100 * CI_LEVEL:.0f}% confidence intervals: {'; '.join(parts)}."


@dataclass(frozen=True)
class DeltaInterval:
    """A 95 % percentile-bootstrap CI of one run's difference to the baseline on one metric."""

    low: float
    high: float
    paired: bool  # resampled by shared sample id (same samples in both runs)
    n: int  # samples resampled (shared ones when paired, else the larger run's)

    def describe(self) -> str:
        """E.g. ``95% CI of the difference -12.3 to -4.0 pp (paired bootstrap, n=442)``."""
        how = "paired bootstrap" if self.paired else "unpaired bootstrap"
        return (
            f"{100 * CI_LEVEL:.0f}% CI of the difference {100 * self.low:+.1f} to {100 * self.high:+.1f} pp "
            f"({how}, n={self.n})"
        )


def delta_interval(runs: Sequence[RunData], row: ComparisonRow, index: int) -> DeltaInterval | None:
    """The bootstrap CI of ``runs[index] - runs[0]`` on ``row``'s metric, from both runs' judgments.

    None when either run lacks the per-sample judgments (e.g. a run folder holding only metrics.json).
    """
    base, other = runs[0], runs[index]
    values = []
    for run in (base, other):
        judgments = run.judgments.get(row.judge)
        if not judgments or not run.samples:
            return None
        values.append(
            metric_values(
                list(run.samples.values()),
                judgments,
                metric=row.metric,
                subset=row.subset,
                group=row.group,
                group_value=row.group_value,
            )
        )
    ci = bootstrap_difference_ci(values[0], values[1], seed=0)
    if ci is None:
        return None
    shared = len(set(values[0]) & set(values[1]))
    return DeltaInterval(ci[0], ci[1], paired=shared > 0, n=shared or max(len(v) for v in values))


def delta_intervals(runs: Sequence[RunData]) -> dict[tuple[str, str, str, int], DeltaInterval]:
    """(judge, subset, metric, run index) → the CI of that run's difference to the baseline, for the
    headline rows of the summary (the ones the before/after section describes)."""
    intervals: dict[tuple[str, str, str, int], DeltaInterval] = {}
    for row in summary_rows(runs):
        if not is_headline(row.subset, row.metric):
            continue
        for index in range(1, len(runs)):
            interval = delta_interval(runs, row, index)
            if interval is not None:
                intervals[(row.judge, row.subset, row.metric, index)] = interval
    return intervals
