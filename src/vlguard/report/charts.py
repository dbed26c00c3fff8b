"""Bar charts of the report, drawn with matplotlib's Agg backend into PNG bytes.

Figures are built with ``matplotlib.figure.Figure`` directly, not ``pyplot``: no global state, no GUI
backend, safe to call from any thread. PNGs are written without a timestamp so the same runs give the
same bytes.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass

from vlguard.metric_registry import metric_label
from vlguard.report.loading import RunData
from vlguard.report.tables import (
    ComparisonRow,
    comparison_rows,
    headline_rank,
    is_headline,
    subset_label,
    subset_short_label,
)

# Colour-blind-safe (Okabe-Ito); the baseline is grey so "before" reads as the reference.
_COLOURS = ("#8c8c8c", "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00")


@dataclass(frozen=True)
class Chart:
    """One chart: a file-name stem, a title, alt text for the image, and the PNG bytes."""

    slug: str
    title: str
    alt: str
    png: bytes

    def data_uri(self) -> str:
        """The PNG as a ``data:`` URI, to embed in a self-contained HTML file."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


def _bar_chart(
    title: str,
    labels: Sequence[str],
    rows: Sequence[ComparisonRow],
    runs: Sequence[RunData],
) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_runs = len(runs)
    width = 0.8 / n_runs
    figure = Figure(figsize=(max(4.5, 0.9 * len(labels) + 1.8), 3.4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for index, run in enumerate(runs):
        values, err_low, err_high, positions = [], [], [], []
        for position, row in enumerate(rows):
            cell = row.cells[index]
            if cell is None:
                continue
            positions.append(position - 0.4 + width * (index + 0.5))
            values.append(100 * cell.value)
            low = cell.ci_low if cell.ci_low is not None else cell.value
            high = cell.ci_high if cell.ci_high is not None else cell.value
            err_low.append(max(0.0, 100 * (cell.value - low)))
            err_high.append(max(0.0, 100 * (high - cell.value)))
        axes.bar(
            positions,
            values,
            width=width,
            color=_COLOURS[index % len(_COLOURS)],
            label=run.label,
            yerr=[err_low, err_high],
            capsize=3,
            error_kw={"elinewidth": 1, "ecolor": "#333333"},
        )
    axes.set_xticks(range(len(labels)))
    axes.set_xticklabels(
        labels, rotation=20 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center"
    )
    # Headroom above 100 % for the legend, so that it never covers a bar.
    axes.set_ylim(0, 118 if n_runs > 1 else 105)
    axes.set_yticks(range(0, 101, 20))
    axes.set_ylabel("%")
    axes.set_title(title, fontsize=11)
    axes.grid(axis="y", alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)
    if n_runs > 1:
        axes.legend(frameon=False, fontsize=9, loc="upper center", ncol=n_runs)
    figure.tight_layout()
    buffer = io.BytesIO()
    # No "Software"/date metadata: identical inputs give identical bytes.
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def headline_chart(runs: Sequence[RunData], judge: str) -> Chart | None:
    """ASR per harmful subset, over-refusal and helpfulness of one judge, one bar per run."""
    rows = [r for r in comparison_rows(runs, "all") if r.judge == judge and is_headline(r.subset, r.metric)]
    rows.sort(key=lambda r: headline_rank(r.subset, r.metric))
    if not rows:
        return None
    # Short x-axis labels, so that four groups of bars fit side by side; a stand-in says so under its bar.
    labels = [
        f"{metric_label(r.metric).split(' (')[0]}\n{subset_short_label(r.subset)}"
        + ("\n(stand-in)" if r.stand_in else "")
        for r in rows
    ]
    axes = sorted({r.axis for r in rows if r.axis})
    title = f"Headline metrics ({judge} judge{', axis ' + ', '.join(axes) if axes else ''})"
    return Chart(
        slug=f"headline-{judge}",
        title=title,
        alt=f"{title}: " + "; ".join(_describe(r, runs) for r in rows),
        png=_bar_chart(title, labels, rows, runs),
    )


def group_charts(runs: Sequence[RunData], group: str = "category") -> list[Chart]:
    """One chart per headline (judge, subset, metric) that has per-``group`` rows, groups on the x axis."""
    charts: list[Chart] = []
    rows = [r for r in comparison_rows(runs, group) if is_headline(r.subset, r.metric)]
    series: dict[tuple[str, str, str], list[ComparisonRow]] = {}
    for row in rows:
        series.setdefault((row.judge, row.subset, row.metric), []).append(row)
    for (judge, subset, metric), members in series.items():
        labels = [r.group_value or "(none)" for r in members]
        note = members[0].axis_note()
        title = f"{metric_label(metric)} on {subset_label(subset)} by {group} ({judge} judge{', ' + note if note else ''})"
        charts.append(
            Chart(
                slug=f"{group}-{judge}-{subset}-{metric}",
                title=title,
                alt=f"{title}: " + "; ".join(_describe(r, runs) for r in members),
                png=_bar_chart(title, labels, members, runs),
            )
        )
    return charts


def _describe(row: ComparisonRow, runs: Sequence[RunData]) -> str:
    name = row.group_value or f"{row.subset} {metric_label(row.metric)}"
    if row.stand_in:
        name += f" ({row.axis_note()})"
    values = ", ".join(
        f"{run.label} {100 * cell.value:.1f}%"
        for run, cell in zip(runs, row.cells, strict=True)
        if cell is not None
    )
    return f"{name}: {values}"


def build_charts(runs: Sequence[RunData]) -> list[Chart]:
    """Every chart of the report: the headline chart of each judge, then the per-category charts."""
    judges = list(dict.fromkeys(j for run in runs for j in run.judges))
    charts = [chart for judge in judges if (chart := headline_chart(runs, judge)) is not None]
    return charts + group_charts(runs, "category")
