"""Render a ``Report`` as markdown (for a pull request, a wiki or a terminal).

Charts are not embedded (many markdown viewers drop ``data:`` images): they are written as PNG files
next to the markdown and linked by relative path. Text from runs is escaped for table cells, and
model responses go into fenced code blocks, where markdown renders nothing (no links, no HTML).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape

from vlguard.metric_registry import metric_label
from vlguard.report.document import CONTENT_WARNING, Report
from vlguard.report.loading import MetricRow
from vlguard.report.published import published_sources, published_table
from vlguard.report.tables import ComparisonRow, is_headline, pct, run_settings, subset_label
from vlguard.report.tradeoff import HARM, utility_settings

# What could start markup inside a table cell: emphasis, code, links/images, strike-through, the cell
# separator. (HTML is escaped separately; parentheses are harmless once brackets are escaped.)
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def cell_text(value: object) -> str:
    """Text safe inside a markdown table cell: one line, HTML and markdown syntax escaped."""
    text = " ".join(str(value).split())
    return _MD_SPECIAL.sub(r"\\\1", escape(text, quote=False))


def fenced(text: str) -> str:
    """A fenced code block longer than any backtick run in ``text``, so the text cannot close it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def _value(cell: MetricRow | None) -> str:
    if cell is None:
        return "–"
    ci = f" [{pct(cell.ci_low)}–{pct(cell.ci_high)}]" if cell.ci_low is not None else ""
    errors = f", {cell.n_errors} err" if cell.n_errors else ""
    return f"{pct(cell.value)}{ci} (n={cell.n}{errors})"


def _delta_interval_text(report: Report, row: ComparisonRow, index: int) -> str:
    interval = report.delta_intervals.get((row.judge, row.subset, row.metric, index))
    return "" if interval is None else f"; {interval.describe()}"


def _delta(row: ComparisonRow, index: int) -> str:
    delta = row.delta(index)
    if delta is None:
        return "–"
    word = row.change_word(index)
    return f"{100 * delta:+.1f} pp{' ' + word if word else ''}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def metrics_table(report: Report, rows: Sequence[ComparisonRow], first_column: str) -> str:
    """Aligned rows as a markdown table, with delta columns for later runs."""
    headers = ["Judge", "Subset", first_column]
    headers += [
        cell_text(run.label) + (" (baseline)" if i == 0 and report.is_comparison else "")
        for i, run in enumerate(report.runs)
    ]
    headers += [f"Δ {cell_text(run.label)}" for run in report.runs[1:]]
    headers.append("Axis")
    body = []
    for row in rows:
        versions = sorted({v for v in row.judge_versions if v})
        judge = cell_text(row.judge) + (f" ({cell_text(', '.join(versions))})" if versions else "")
        name = (
            metric_label(row.metric)
            if row.group == "all"
            else f"{row.group_value or '(none)'} ({metric_label(row.metric)})"
        )
        cells = [judge, cell_text(subset_label(row.subset)), cell_text(name)]
        cells += [_value(cell) for cell in row.cells]
        cells += [_delta(row, i) for i in range(1, len(row.cells))]
        cells.append(cell_text(row.axis_note()) or "–")
        body.append(cells)
    return _table(headers, body)


def _tradeoff_markdown(report: Report, chart_files: Mapping[str, str]) -> list[str]:
    """The safety-vs-capability section: chart, one row per run, the cost row of each later run."""
    tradeoff = report.tradeoff
    if tradeoff is None:
        return []
    out = ["", "## Safety vs capability", ""]
    if tradeoff.chart is not None and tradeoff.chart.slug in chart_files:
        out += [f"![{cell_text(tradeoff.chart.alt)}]({chart_files[tradeoff.chart.slug]})", ""]
    rows = []
    for run in report.runs:
        cells = [cell_text(run.label)]
        for measure in tradeoff.measures:
            point = tradeoff.points[run.label].get(measure.key)
            if point is None:
                cells.append("–")
                continue
            ci = f" [{measure.show(point.low)}–{measure.show(point.high)}]" if point.low is not None else ""
            cells.append(f"{measure.show(point.value)}{ci} (n={point.n})")
        rows.append(cells)
    out.append(_table(["Run", *(cell_text(m.label) for m in tradeoff.measures)], rows))
    if report.is_comparison:
        measures = [m for m in tradeoff.measures if m.kind != HARM]
        cost_rows = []
        for run in report.runs[1:]:
            by_measure = {c.measure.key: c for c in tradeoff.costs if c.run == run.label}
            cells = [cell_text(run.label)]
            for measure in measures:
                cost = by_measure.get(measure.key)
                if cost is None:
                    cells.append("–")
                elif cost.low is None or cost.high is None:
                    cells.append(f"{measure.points(cost.delta):+.1f} pts (no interval)")
                else:
                    cells.append(
                        f"{measure.points(cost.delta):+.1f} pts [{measure.points(cost.low):+.1f}, "
                        f"{measure.points(cost.high):+.1f}] {'no measurable change' if cost.verdict == 'none' else cost.verdict}"
                    )
            cells.append(cell_text(tradeoff.verdicts.get(run.label, "")))
            cost_rows.append(cells)
        out += ["", f"### What the change costs (vs {cell_text(report.runs[0].label)})", ""]
        out.append(_table(["Run", *(f"Δ {cell_text(m.label)}" for m in measures), "Verdict"], cost_rows))
        out.append("")
        for label, text in tradeoff.verdicts.items():
            out.append(f"- **{cell_text(label)}**: {cell_text(text)}")
            out += [f"  - {cell_text(c.text)}" for c in tradeoff.costs if c.run == label]
        out += [
            "",
            "Changes in points (percentage points for rates) with 95% intervals (paired bootstrap where per-item "
            "results exist, else MOVER from the runs' intervals); a verdict only where the interval excludes zero.",
        ]
    settings = [(run.label, item) for run in report.runs for item in utility_settings(run)]
    if settings:
        keys = list(settings[0][1])
        out += ["", "Capability tasks as the engines ran them:", ""]
        out.append(
            _table(
                ["Run", *keys],
                [
                    [cell_text(label), *(cell_text("–" if item[k] is None else item[k]) for k in keys)]
                    for label, item in settings
                ],
            )
        )
    return out


def render_markdown(report: Report, chart_files: Mapping[str, str] | None = None) -> str:
    """The report as markdown; ``chart_files`` maps a chart's slug to its PNG's path relative to the file."""
    chart_files = chart_files or {}
    runs = report.runs
    out = [f"# {cell_text(report.title)}{' (INCOMPLETE)' if report.incomplete else ''}", ""]
    out.append(f"> **{CONTENT_WARNING}**")
    out.append("")
    for note in report.incomplete:
        out += [f"> **⚠ {cell_text(note)}**", ""]
    if report.is_comparison:
        out.append(
            f"Comparison of {len(runs)} runs; the first, **{cell_text(runs[0].label)}**, is the baseline."
        )
    else:
        out.append(f"Run **{cell_text(runs[0].label)}**.")
    out += ["", "## Summary", ""]
    for warning in report.warnings:
        out.append(f"- ⚠ {cell_text(warning)}")
    if report.warnings:
        out.append("")
    headline = [r for r in report.summary if is_headline(r.subset, r.metric)]
    others = [r for r in report.summary if not is_headline(r.subset, r.metric)]
    if report.summary:
        out += [metrics_table(report, headline or others, "Metric"), ""]
        out.append(f"{cell_text(report.intervals_note)} n = judged samples (errors excluded).")
    else:
        out.append("These runs hold no safety results (`vlguard eval`); their capability results follow.")
    if headline and others:
        out += ["", "### Other metrics", "", metrics_table(report, others, "Metric")]

    if report.published:
        headers, rows = published_table(report.published, runs)
        out += ["", "## Published figures", ""]
        out.append(_table([cell_text(h) for h in headers], [[cell_text(c) for c in r] for r in rows]))
        out += ["", "Sources: " + "; ".join(cell_text(s) for s in published_sources(report.published)) + "."]
        out.append("The published numbers come from other models and protocols: see docs/paper-table.md.")

    out += ["", "## What produced these numbers", ""]
    settings = [run_settings(run) for run in runs]
    keys = list(dict.fromkeys(k for s in settings for k in s))
    out.append(
        _table(
            ["Setting", *(cell_text(run.label) for run in runs)],
            [[cell_text(k), *(cell_text(s.get(k, "–")) for s in settings)] for k in keys],
        )
    )

    if report.is_comparison:
        out += ["", "## Before / after", ""]
        for row in report.summary:
            if not is_headline(row.subset, row.metric) or row.cells[0] is None:
                continue
            for index in range(1, len(runs)):
                cell = row.cells[index]
                if cell is not None:
                    out.append(
                        f"- **{metric_label(row.metric)}** on {subset_label(row.subset)} "
                        f"({cell_text(row.judge)}{', ' + row.axis_note() if row.axis_note() else ''}), "
                        f"{cell_text(runs[0].label)} → {cell_text(runs[index].label)}: "
                        f"{pct(row.cells[0].value)} → {pct(cell.value)} ({_delta(row, index)})"
                        + _delta_interval_text(report, row, index)
                    )

    out += _tradeoff_markdown(report, chart_files)

    out += ["", "## Charts", ""]
    for chart in report.charts:
        if chart.slug in chart_files:
            out += [f"![{cell_text(chart.alt)}]({chart_files[chart.slug]})", ""]
    if report.groups.get("category"):
        out += ["## Per category", "", metrics_table(report, report.groups["category"], "Category"), ""]

    out += ["## Judge agreement", ""]
    agreement = [row for run in runs for row in run.agreement]
    if agreement:
        out.append(
            _table(
                ["Run", "Judges", "Subset", "Cohen's κ", "Raw agreement", "n"],
                [
                    [
                        cell_text(r.run),
                        cell_text(" vs ".join(r.judges)),
                        cell_text("all subsets" if r.subset == "all" else subset_label(r.subset)),
                        "undefined" if r.kappa is None else f"{r.kappa:.3f}",
                        pct(r.agreement),
                        str(r.n),
                    ]
                    for r in agreement
                ],
            )
        )
    else:
        out.append("No judge agreement recorded: each run was scored by a single judge.")

    out += [
        "",
        "## Example generations",
        "",
        f"> **{CONTENT_WARNING}**",
        "",
        cell_text(report.image_status.note),
        "",
    ]
    for section in report.examples:
        out += [f"### {subset_label(section.subset)} ({len(section.examples)} of {section.n_available})", ""]
        for example in section.examples:
            sample = example.sample
            where = f"{sample.category} / {sample.subcategory}" if sample.category else "no category"
            out += [f"**Sample {cell_text(sample.id)}** ({cell_text(where)})", "", fenced(sample.prompt), ""]
            for answer in example.answers:
                labels = ", ".join(f"{judge}: {label}" for judge, label in answer.labels.items())
                out.append(f"*{cell_text(answer.run)}* ({cell_text(labels) or 'not judged'})")
                out.append("")
                text = f"generation failed: {answer.error}" if answer.error else answer.response
                if answer.truncated_chars:
                    text += f"\n… ({answer.truncated_chars} more characters)"
                out += [fenced(text), ""]
    out += ["", f"_Generated by vlguard {report.version} at {report.generated_at}._", ""]
    return "\n".join(out)
