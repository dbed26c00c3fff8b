"""The report as data: every table, chart and example, computed once, then rendered as HTML,
markdown, JSON or CSV by the modules beside this one."""

from __future__ import annotations

from dataclasses import dataclass

from vlguard.report.charts import Chart
from vlguard.report.examples import ExampleSection, ImageStatus
from vlguard.report.intervals import DeltaInterval
from vlguard.report.loading import RunData
from vlguard.report.published import PublishedRow
from vlguard.report.tables import ComparisonRow
from vlguard.report.tradeoff import Tradeoff

CONTENT_WARNING = (
    "Content warning: this report quotes harmful instructions from a safety benchmark and model "
    "outputs that may be offensive or dangerous, and may show the benchmark's harmful images."
)


@dataclass(frozen=True)
class Report:
    """One report over one run (a summary) or several (the first is the baseline)."""

    title: str
    runs: tuple[RunData, ...]
    summary: tuple[ComparisonRow, ...]
    groups: dict[str, tuple[ComparisonRow, ...]]  # "category" / "subcategory" -> rows
    charts: tuple[Chart, ...]
    warnings: tuple[str, ...]
    intervals_note: str  # how the CIs were made (Wilson, bootstrap, ...), stated under the tables
    # (judge, subset, metric, run index) -> bootstrap CI of that run's headline delta to the baseline
    delta_intervals: dict[tuple[str, str, str, int], DeltaInterval]
    examples: tuple[ExampleSection, ...]
    image_status: ImageStatus
    primary_judge: str | None
    generated_at: str
    version: str
    # One line per run whose numbers cover only part of its samples (see ``incompleteness_notes``).
    incomplete: tuple[str, ...] = ()
    # Safety vs capability (ASR against helpfulness, over-refusal, the cost row); None without any
    # helpfulness measure (no win rate, no `vlguard utility` results).
    tradeoff: Tradeoff | None = None
    # Published figures for the runs' benchmarks, beside the runs' numbers (``vlguard.report.published``).
    published: tuple[PublishedRow, ...] = ()

    @property
    def is_comparison(self) -> bool:
        """Whether the report compares runs with a baseline (more than one run)."""
        return len(self.runs) > 1
