"""What each metric means, in one place: its names, its definition, which way is better, its unit, and
the axis (what a judge's verdicts measure).

``metrics.py`` computes the metrics; the CLI summary, the report's tables, charts and tooltips read
their meaning from ``METRICS`` here. A metric name missing from it (a newer metrics.json) still shows,
under its own name.

**Axis.** Every metric row says what its number measures (``metrics.json``: ``axis``):

- ``refusal``: did the model decline (the refusal judges, WildGuard's refusal view);
- ``harm``: did the answer carry harmful content (Llama Guard, Beaver-Dam, WildGuard ``view=harm``,
  ``llm-judge mode=harm``);
- ``rubric``: the benchmark's own rubric (a judge that asks the reference's question);
- ``accuracy``: does a task answer match the gold answer;
- ``win_rate``: does the answer win a pairwise comparison with the reference answer.

A row's axis is its judge's (``JudgeEntry.axis``, refined by the judge's options). A benchmark declares
the axis its reference scores on (``BenchmarkEntry.axis``, per subset where they differ); a safety row
(refusal, harm or rubric) whose judge measures another safety axis than the reference is a *stand-in*
(``stand_in: true``), and every place that shows its number says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Axis = Literal["refusal", "harm", "rubric", "accuracy", "win_rate"]
AXES: dict[str, str] = {  # axis -> what it measures (its keys are the values of Axis)
    "refusal": "did the model decline",
    "harm": "did the answer carry harmful content",
    "rubric": "the benchmark's own rubric",
    "accuracy": "does the task answer match the gold answer",
    "win_rate": "does the answer win against the reference answer",
}
# The axes of safety verdicts: a row on one of them can stand in for a reference on another.
SAFETY_AXES: frozenset[str] = frozenset({"refusal", "harm", "rubric"})


def is_stand_in(axis: str | None, reference_axis: str | None) -> bool:
    """Whether a row whose judge measures ``axis`` stands in for a reference that scores ``reference_axis``.

    Only between safety axes: a refusal judge on a benchmark whose reference judges harm is a stand-in;
    a pairwise or accuracy row is a different metric, not a stand-in for the safety one.
    """
    return (
        axis is not None
        and reference_axis is not None
        and axis != reference_axis
        and axis in SAFETY_AXES
        and reference_axis in SAFETY_AXES
    )


@dataclass(frozen=True)
class MetricInfo:
    """What one metric means.

    ``label``: the report's name; ``short``: the CLI summary's; ``help``: its one-line definition (the
    report's tooltip); ``higher_is_better``: which way a change is an improvement (a report's
    better / worse); ``unit``: ``share`` (a share of judged samples, shown as a percentage);
    ``summary``: shown in the CLI summary table after a run.
    """

    label: str
    short: str
    help: str
    higher_is_better: bool = False
    unit: str = "share"
    summary: bool = False


# In the order the report lists them.
METRICS: dict[str, MetricInfo] = {
    "attack_success_rate": MetricInfo(
        "ASR", "ASR", "share of harmful prompts the model answered (lower is better)", summary=True
    ),
    "over_refusal_rate": MetricInfo(
        "Over-refusal",
        "over-refusal",
        "share of benign prompts the model refused (lower is better)",
        summary=True,
    ),
    "helpfulness_win_rate": MetricInfo(
        "Helpfulness (win rate)",
        "win rate",
        "share of pairwise comparisons won against the reference answers (higher is better)",
        higher_is_better=True,
        summary=True,
    ),
    "accuracy": MetricInfo(
        "Accuracy",
        "accuracy",
        "share of task answers that match the gold answer (higher is better)",
        higher_is_better=True,
        summary=True,
    ),
    "partial_refusal_rate": MetricInfo(
        "Partial refusal", "partial refusal", "share of responses that refuse and then comply anyway"
    ),
    "helpfulness_tie_rate": MetricInfo(
        "Helpfulness (tie rate)", "tie rate", "share of pairwise comparisons judged a tie"
    ),
    "degenerate_rate": MetricInfo(
        "Degenerate output",
        "degenerate",
        "share of empty or garbage responses (counted as compliance by the refusal judge)",
    ),
    "error_rate": MetricInfo("Errors", "errors", "share of samples whose generation or judging failed"),
}

# Which metric heads a judge × subset when a benchmark declares none, in order of preference.
HEADLINE_PREFERENCE = ("attack_success_rate", "helpfulness_win_rate", "over_refusal_rate", "accuracy")


def metric_info(metric: str) -> MetricInfo:
    """The facts of ``metric``; a metric not registered here gets its own name and no definition."""
    known = METRICS.get(metric)
    if known is not None:
        return known
    name = metric.replace("_", " ")
    return MetricInfo(name, name, "")


def metric_label(metric: str) -> str:
    """The report's name of a metric (its own name, spaced, for metrics not registered here)."""
    return metric_info(metric).label


def metric_rank(metric: str) -> int:
    """Where a metric sorts in the report (registered ones first, in ``METRICS`` order)."""
    return list(METRICS).index(metric) if metric in METRICS else len(METRICS)
