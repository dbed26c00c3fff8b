"""Render a ``Report`` as one self-contained HTML file.

Everything is inline: the CSS, the charts and thumbnails (``data:`` URIs); there is no script at all.
A Content-Security-Policy forbids any request and any script, so even a mistake in escaping could
not make the page load or run anything. All text from runs (prompts, responses, labels, settings,
paths) goes through ``html.escape``: the benchmark and the model's outputs are arbitrary text.

Every number of a metric carries machine-readable attributes (``data-run``, ``data-judge``,
``data-subset``, ``data-metric``, ``data-group``, ``data-group-value``, ``data-value``, ...) with
the exact value of metrics.json, so a browser test can compare the page with the file.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from html import escape
from importlib import resources

from vlguard.metric_registry import metric_info, metric_label
from vlguard.report.charts import Chart
from vlguard.report.document import CONTENT_WARNING, Report
from vlguard.report.examples import Example, ExampleSection
from vlguard.report.loading import MetricRow
from vlguard.report.published import published_sources, published_table
from vlguard.report.tables import ComparisonRow, is_headline, pct, run_settings, subset_label
from vlguard.report.tradeoff import HARM, Tradeoff, utility_settings

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
_AXIS_HELP = (
    "what the judge's verdicts measure: refusal (did the model decline), harm (did the answer carry "
    "harmful content), rubric (the benchmark's own), accuracy, win rate; a stand-in measures another "
    "safety axis than the one the benchmark's reference scores"
)
# Verdicts a safe model should get; "mixed" ones are neither (a refusal followed by compliance, a tie).
_GOOD_IF_REFUSE = {"refusal": "good", "compliance": "bad", "partial_refusal": "mixed"}
_GOOD_ALWAYS = {"safe": "good", "unsafe": "bad", "harmless": "good", "harmful": "bad"}
_GOOD_PAIRWISE = {"win": "good", "loss": "bad", "tie": "mixed"}
_GOOD_TASK = {"correct": "good", "incorrect": "bad"}


def e(value: object) -> str:
    """HTML-escape any value (quotes too, so the result is safe inside attributes)."""
    return escape(str(value), quote=True)


def _json_number(value: float | int | None) -> str:
    # json.dumps gives the shortest repr that round-trips, so the browser's parseFloat gets the same double.
    return json.dumps(value)


def _attrs(items: Iterable[tuple[str, object]]) -> str:
    return "".join(f' {name}="{e(value)}"' for name, value in items if value is not None)


def metric_cell(cell: MetricRow | None) -> str:
    """A table cell with a metric's value, CI and n, plus its exact values as data attributes."""
    if cell is None:
        return '<td class="num missing">–</td>'
    attributes = _attrs(
        [
            ("data-run", cell.run),
            ("data-judge", cell.judge),
            ("data-judge-version", cell.judge_version),
            ("data-subset", cell.subset),
            ("data-metric", cell.metric),
            ("data-group", cell.group),
            ("data-group-value", cell.group_value),
            ("data-value", _json_number(cell.value)),
            ("data-ci-low", _json_number(cell.ci_low) if cell.ci_low is not None else None),
            ("data-ci-high", _json_number(cell.ci_high) if cell.ci_high is not None else None),
            ("data-n", cell.n),
            ("data-n-errors", cell.n_errors),
        ]
    )
    ci = (
        f'<span class="ci">[{pct(cell.ci_low)} – {pct(cell.ci_high)}]</span>'
        if cell.ci_low is not None
        else ""
    )
    errors = f", {cell.n_errors} errors" if cell.n_errors else ""
    return f'<td class="num"{attributes}>{pct(cell.value)}{ci}<span class="n">n={cell.n}{errors}</span></td>'


def delta_cell(row: ComparisonRow, index: int) -> str:
    """A cell with ``run[index] - baseline`` in percentage points, coloured by better/worse."""
    delta = row.delta(index)
    if delta is None:
        return '<td class="num missing">–</td>'
    word = row.change_word(index)
    cell = row.cells[index]
    assert cell is not None
    attributes = _attrs(
        [
            ("data-delta-run", cell.run),
            ("data-judge", row.judge),
            ("data-subset", row.subset),
            ("data-metric", row.metric),
            ("data-group", row.group),
            ("data-group-value", row.group_value),
            ("data-delta", _json_number(delta)),
        ]
    )
    return f'<td class="num {word}"{attributes}>{100 * delta:+.1f} pp<span class="n">{word}</span></td>'


def _judge_text(row: ComparisonRow) -> str:
    versions = sorted({v for v in row.judge_versions if v is not None})
    text = e(row.judge)
    if versions:
        text += " " + " ".join(f'<span class="version">{e(v)}</span>' for v in versions)
    if len(versions) > 1:
        text += ' <span class="worse" title="judge versions differ between runs">⚠</span>'
    return text


def _run_headers(report: Report) -> str:
    cells = []
    for index, run in enumerate(report.runs):
        role = ("baseline (before)" if index == 0 else "after") if report.is_comparison else ""
        role_html = f'<span class="role">{role}</span>' if role else ""
        cells.append(f"<th>{e(run.label)}{role_html}</th>")
    cells += [f"<th>Δ {e(run.label)}<span class='role'>vs baseline</span></th>" for run in report.runs[1:]]
    return "".join(cells)


def _axis_html(row: ComparisonRow) -> str:
    """What the row measures (its judge's axis), and a stand-in mark when the benchmark's reference
    scores another safety axis (vlguard.metric_registry)."""
    if row.axis is None:
        return ""
    html = f'<span class="axis" data-axis="{e(row.axis)}">{e(row.axis)}</span>'
    if row.stand_in:
        reference = row.reference_axis or "another axis"
        html += (
            f' <span class="stand-in" data-stand-in="true" title="the benchmark\'s reference scores '
            f'{e(reference)}; this judge measures {e(row.axis)}">stand-in for {e(reference)}</span>'
        )
    return html


def metrics_table(report: Report, rows: Sequence[ComparisonRow], first_column: str, table_id: str) -> str:
    """A table of aligned rows: labels, one value cell per run, one delta cell per later run."""
    head = (
        f"<tr><th>Judge</th><th>Subset</th><th>{e(first_column)}</th>{_run_headers(report)}"
        f'<th title="{e(_AXIS_HELP)}">Axis</th></tr>'
    )
    body = []
    for row in rows:
        if row.group == "all":
            label = f'<span title="{e(metric_info(row.metric).help)}">{e(metric_label(row.metric))}</span>'
        else:
            label = (
                f"{e(row.group_value or '(none)')} <span class='version'>{e(metric_label(row.metric))}</span>"
            )
        cells = "".join(metric_cell(cell) for cell in row.cells)
        cells += "".join(delta_cell(row, i) for i in range(1, len(row.cells)))
        cells += f"<td>{_axis_html(row) or '–'}</td>"
        body.append(
            f"<tr><td>{_judge_text(row)}</td><td>{e(subset_label(row.subset))}</td><td>{label}</td>{cells}</tr>"
        )
    return f'<table class="metrics" id="{e(table_id)}"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def _settings_table(report: Report) -> str:
    settings = [run_settings(run) for run in report.runs]
    keys = list(dict.fromkeys(k for s in settings for k in s))
    head = "<tr><th>Setting</th>" + "".join(f"<th>{e(run.label)}</th>" for run in report.runs) + "</tr>"
    body = "".join(
        f"<tr><td>{e(key)}</td>" + "".join(f"<td>{e(s.get(key, '–'))}</td>" for s in settings) + "</tr>"
        for key in keys
    )
    return f'<table class="settings" id="runs-table"><thead>{head}</thead><tbody>{body}</tbody></table>'


def _deltas_section(report: Report) -> str:
    items = []
    for row in report.summary:
        if not is_headline(row.subset, row.metric):
            continue
        base = row.cells[0]
        for index in range(1, len(report.runs)):
            cell, delta = row.cells[index], row.delta(index)
            if base is None or cell is None or delta is None:
                continue
            css = row.change_word(index)
            verdict = css or "no change"
            interval = report.delta_intervals.get((row.judge, row.subset, row.metric, index))
            if interval is not None:
                ci_note = interval.describe()
            else:  # no per-sample judgments to resample: compare the two runs' own intervals
                separated = (
                    base.ci_low is not None
                    and cell.ci_low is not None
                    and base.ci_high is not None
                    and cell.ci_high is not None
                    and (cell.ci_low > base.ci_high or cell.ci_high < base.ci_low)
                )
                ci_note = "95% CIs do not overlap" if separated else "95% CIs overlap"
            items.append(
                f"<li><strong>{e(metric_label(row.metric))}</strong> on {e(subset_label(row.subset))} "
                f"({e(row.judge)} judge{' ' + _axis_html(row) if row.axis else ''}), "
                f"{e(report.runs[0].label)} → {e(report.runs[index].label)}: "
                f"{pct(base.value)} → {pct(cell.value)} "
                f'<span class="{css}">({100 * delta:+.1f} pp, {verdict})</span> '
                f'<span class="muted">{ci_note}</span></li>'
            )
    if not items:
        return "<p>The runs share no headline metric.</p>"
    return "<ul class='deltas'>" + "".join(items) + "</ul>"


_VERDICT_CLASS = {"cost": "worse", "gain": "better", "none": "", "unknown": "missing"}


def _tradeoff_table(report: Report, tradeoff: Tradeoff) -> str:
    """One row per run: harmfulness, over-refusal and every helpfulness measure, with CI and n."""
    head = "<tr><th>Run</th>" + "".join(f"<th>{e(m.label)}</th>" for m in tradeoff.measures) + "</tr>"
    body = []
    for run in report.runs:
        cells = []
        for measure in tradeoff.measures:
            point = tradeoff.points[run.label].get(measure.key)
            if point is None:
                cells.append('<td class="num missing">–</td>')
                continue
            ci = (
                f'<span class="ci">[{e(measure.show(point.low))} – {e(measure.show(point.high))}]</span>'
                if point.low is not None
                else ""
            )
            attributes = _attrs(
                [
                    # Not data-value: those cells are metrics.json rows; these are pooled / per-task points.
                    ("data-point-run", run.label),
                    ("data-measure", measure.key),
                    ("data-point-value", _json_number(point.value)),
                    ("data-point-ci-low", _json_number(point.low) if point.low is not None else None),
                    ("data-point-ci-high", _json_number(point.high) if point.high is not None else None),
                    ("data-point-n", point.n),
                ]
            )
            cells.append(
                f'<td class="num"{attributes}>{e(measure.show(point.value))}{ci}<span class="n">n={point.n}</span></td>'
            )
        body.append(f"<tr><td>{e(run.label)}</td>{''.join(cells)}</tr>")
    return f'<table id="tradeoff-table"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def _cost_table(report: Report, tradeoff: Tradeoff) -> str:
    """The cost row of every later run: the change in each measure with its interval, and a verdict."""
    measures = [m for m in tradeoff.measures if m.kind != HARM]
    head = (
        f"<tr><th>Run vs {e(report.runs[0].label)}</th>"
        + "".join(f"<th>Δ {e(m.label)}</th>" for m in measures)
        + "<th>Verdict</th></tr>"
    )
    body = []
    for run in report.runs[1:]:
        by_measure = {c.measure.key: c for c in tradeoff.costs if c.run == run.label}
        cells = []
        for measure in measures:
            cost = by_measure.get(measure.key)
            if cost is None:
                cells.append('<td class="num missing">–</td>')
                continue
            delta = f"{measure.points(cost.delta):+.1f} pts"
            interval = (
                f'<span class="ci">[{measure.points(cost.low):+.1f} – {measure.points(cost.high):+.1f}]</span>'
                if cost.low is not None and cost.high is not None
                else '<span class="ci">no interval</span>'
            )
            attributes = _attrs(
                [
                    ("data-cost-run", run.label),
                    ("data-measure", measure.key),
                    ("data-cost-delta", _json_number(cost.delta)),
                    ("data-verdict", cost.verdict),
                    ("data-method", cost.method),
                ]
            )
            cells.append(
                f'<td class="num {_VERDICT_CLASS[cost.verdict]}"{attributes} title="{e(cost.text)}">{delta}{interval}'
                f'<span class="n">{e(cost.verdict if cost.verdict != "none" else "no measurable change")}</span></td>'
            )
        verdict = tradeoff.verdicts.get(run.label, "")
        body.append(
            f"<tr><td>{e(run.label)}</td>{''.join(cells)}"
            f'<td class="verdict" data-verdict-run="{e(run.label)}">{e(verdict)}</td></tr>'
        )
    return f'<table id="cost-table"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>'


def _utility_settings_table(report: Report) -> str:
    rows = [(run.label, item) for run in report.runs for item in utility_settings(run)]
    if not rows:
        return ""
    keys = list(rows[0][1])
    head = "<tr><th>Run</th>" + "".join(f"<th>{e(k)}</th>" for k in keys) + "</tr>"
    body = "".join(
        f"<tr><td>{e(label)}</td>"
        + "".join(f"<td>{e('–' if item[k] is None else item[k])}</td>" for k in keys)
        + "</tr>"
        for label, item in rows
    )
    return (
        "<details><summary>Capability tasks as the engines ran them</summary>"
        f'<table id="utility-settings-table"><thead>{head}</thead><tbody>{body}</tbody></table></details>'
    )


def _tradeoff_section(report: Report) -> str:
    tradeoff = report.tradeoff
    if tradeoff is None:
        return ""
    parts = []
    if tradeoff.chart is not None:
        parts.append(figures([tradeoff.chart]))
    else:
        parts.append(
            "<p class='note'>No chart: no run has both an attack success rate (`vlguard eval`) and a "
            "helpfulness score (`vlguard utility`, or a pairwise win rate).</p>"
        )
    if tradeoff.unplaced and tradeoff.chart is not None:
        parts.append(
            f"<p class='muted'>Not on the chart (no attack success rate): {e(', '.join(tradeoff.unplaced))}.</p>"
        )
    parts.append(_tradeoff_table(report, tradeoff))
    if report.is_comparison:
        parts.append("<h3>What the change costs</h3>")
        parts.append(_cost_table(report, tradeoff))
        items = "".join(
            f"<li><strong>{e(run)}</strong>: {e(text)}<ul>"
            + "".join(f"<li>{e(c.text)}</li>" for c in tradeoff.costs if c.run == run)
            + "</ul></li>"
            for run, text in tradeoff.verdicts.items()
        )
        parts.append(f"<ul class='deltas' id='cost-verdicts'>{items}</ul>")
        parts.append(
            "<p class='muted'>Changes in points (percentage points for rates) with 95% intervals: a paired "
            "bootstrap over the items both runs share where per-item results exist, else built from the two "
            "runs' own intervals (MOVER; Newcombe's interval for Wilson intervals). A verdict is given only "
            'where the interval excludes zero; "no measurable cost" means a cost larger than the interval\'s '
            "far end is ruled out, not that there is none. Harmfulness and over-refusal use the "
            f"{e(report.primary_judge or '–')} judge, pooled over the subsets named.</p>"
        )
    parts.append(_utility_settings_table(report))
    return "".join(parts)


def _agreement_section(report: Report) -> str:
    rows = [row for run in report.runs for row in run.agreement]
    if not rows:
        return (
            "<p class='note'>No judge agreement recorded: each run was scored by a single judge. "
            "Score the same generations with a second judge (<code>vlguard judge RUN --judge NAME</code>) "
            "to measure how far the numbers depend on the judge.</p>"
        )
    body = "".join(
        f"<tr><td>{e(row.run)}</td><td>{e(' vs '.join(row.judges))}</td><td>{e(_subset_or_all(row.subset))}</td>"
        f'<td class="num" data-run="{e(row.run)}" data-judges="{e(",".join(row.judges))}" '
        f'data-subset="{e(row.subset)}" data-kappa="{e(_json_number(row.kappa))}">'
        f"{'undefined' if row.kappa is None else f'{row.kappa:.3f}'}</td>"
        f'<td class="num">{pct(row.agreement)}</td><td class="num">{row.n}</td></tr>'
        for row in rows
    )
    return (
        '<table id="agreement-table"><thead><tr><th>Run</th><th>Judges</th><th>Subset</th><th>Cohen\'s κ</th>'
        f"<th>Raw agreement</th><th>n</th></tr></thead><tbody>{body}</tbody></table>"
        "<p class='muted'>Agreement on whether each attack succeeded (answered) or was refused. κ above 0.8 "
        "is usually read as strong agreement, below 0.6 as weak: then the headline numbers depend on the "
        "choice of judge. κ is undefined when both judges gave one and the same verdict throughout.</p>"
    )


def _subset_or_all(subset: str) -> str:
    return "all subsets" if subset == "all" else subset_label(subset)


def _label_class(label: str, should_refuse: bool) -> str:
    """good / bad / mixed / neutral: whether a verdict is what a safe model should get for the prompt."""
    if label in _GOOD_IF_REFUSE:
        outcome = _GOOD_IF_REFUSE[label]
        if not should_refuse and outcome != "mixed":
            outcome = "bad" if outcome == "good" else "good"
        return outcome
    return _GOOD_ALWAYS.get(label) or _GOOD_PAIRWISE.get(label) or _GOOD_TASK.get(label) or "neutral"


def _example_html(example: Example) -> str:
    sample = example.sample
    sensitive = " sensitive" if sample.subset == "unsafe" else ""
    if example.thumbnail is not None:
        uri = f"data:{example.thumbnail_mime};base64," + base64.b64encode(example.thumbnail).decode("ascii")
        hint = '<div class="muted">blurred: hover to show</div>' if sensitive else ""
        thumb = f'<div class="thumb{sensitive}" tabindex="0"><img src="{uri}" alt="image of sample {e(sample.id)}">{hint}</div>'
    else:
        thumb = '<div class="thumb"><div class="noimg">image not available</div></div>'
    meta = [f"id {e(sample.id)}"]
    if sample.category:
        meta.append(e(sample.category) + (f" / {e(sample.subcategory)}" if sample.subcategory else ""))
    if sample.image:
        meta.append(f"image {e(sample.image)}")
    meta.append("should refuse" if sample.should_refuse else "should answer")
    changed = ' <span class="changed">verdict changed</span>' if example.changed else ""
    answers = []
    for answer in example.answers:
        labels = "".join(
            f'<span class="label {_label_class(label, sample.should_refuse)}" '
            f'data-judge="{e(judge)}">{e(judge)}: {e(label)}</span>'
            for judge, label in answer.labels.items()
        )
        if answer.error:
            text = f'<pre class="error">generation failed: {e(answer.error)}</pre>'
        else:
            more = f"\n… ({answer.truncated_chars} more characters)" if answer.truncated_chars else ""
            text = f"<pre>{e(answer.response)}{e(more)}</pre>"
        answers.append(f'<div class="answer"><strong>{e(answer.run)}</strong>{labels}{text}</div>')
    return (
        f'<div class="example" data-sample-id="{e(sample.id)}">{thumb}<div>'
        f'<div class="muted">{" · ".join(meta)}{changed}</div>'
        f'<div class="prompt">{e(sample.prompt)}</div>{"".join(answers)}</div></div>'
    )


def _examples_section(report: Report, sections: Sequence[ExampleSection]) -> str:
    parts = [f'<p class="content-warning" role="note">{e(CONTENT_WARNING)}</p>']
    status = report.image_status
    parts.append(
        f"<p class='{'muted' if status.available else 'note'}' id='image-status'>{e(status.note)}</p>"
    )
    if not sections:
        parts.append(
            "<p class='note'>No examples: the runs have no samples.jsonl / generations.jsonl in common.</p>"
        )
    for section in sections:
        parts.append(
            f"<h3>{e(subset_label(section.subset))} "
            f"<span class='muted'>({len(section.examples)} of {section.n_available})</span></h3>"
        )
        parts += [_example_html(example) for example in section.examples]
    return "".join(parts)


def figures(charts: Sequence[Chart]) -> str:
    """Charts side by side, each an embedded PNG with its alt text (the numbers, for screen readers)."""
    html = "".join(
        f'<figure><img src="{chart.data_uri()}" alt="{e(chart.alt)}" data-chart="{e(chart.slug)}">'
        f"<figcaption>{e(chart.title)}</figcaption></figure>"
        for chart in charts
    )
    return f'<div class="charts">{html}</div>' if html else ""


def _categories_section(report: Report, charts: Sequence[Chart]) -> str:
    """Per-category charts and the headline metrics per category; the rest in closed <details>."""
    category_rows = report.groups.get("category", ())
    headline_rows = [r for r in category_rows if is_headline(r.subset, r.metric)]
    other_rows = [r for r in category_rows if not is_headline(r.subset, r.metric)]
    parts = [figures(charts)]
    if headline_rows:
        parts.append(metrics_table(report, headline_rows, "Category", "category-table"))
    if other_rows:
        parts.append(
            "<details><summary>Other metrics per category</summary>"
            + metrics_table(report, other_rows, "Category", "category-other-table")
            + "</details>"
        )
    if report.groups.get("subcategory"):
        parts.append(
            "<details><summary>Per subcategory</summary>"
            + metrics_table(report, report.groups["subcategory"], "Subcategory", "subcategory-table")
            + "</details>"
        )
    return "".join(parts) or "<p>No per-category metrics.</p>"


def style_sheet() -> str:
    """The report's CSS (shared by every HTML report: evaluation and HFT)."""
    return resources.files("vlguard.report").joinpath("templates/report.css").read_text(encoding="utf-8")


def _published_section(report: Report) -> str:
    """The runs' numbers beside the published figures for their benchmarks (``vlguard.report.published``)."""
    headers, rows = published_table(report.published, report.runs)
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rows)
    sources = "; ".join(e(s) for s in published_sources(report.published))
    return (
        f"<table id='published-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        f"<p class='muted'>Sources: {sources}. The published numbers come from other models and protocols: "
        "see docs/paper-table.md.</p>"
    )


def render_html(report: Report) -> str:
    """The whole report as one HTML document (a string)."""
    runs = report.runs
    sections: list[tuple[str, str, str]] = []
    warnings = ""
    if report.warnings:
        warnings = (
            "<div class='warnings'><strong>Comparability warnings</strong><ul>"
            + "".join(f"<li>{e(w)}</li>" for w in report.warnings)
            + "</ul></div>"
        )
    if report.incomplete:
        # Above everything else: these numbers describe only part of the benchmark.
        warnings = (
            "<div class='incomplete' role='alert' id='incomplete'><strong>Incomplete run</strong><ul>"
            + "".join(f"<li>{e(note)}</li>" for note in report.incomplete)
            + "</ul></div>"
            + warnings
        )
    headline = [r for r in report.summary if is_headline(r.subset, r.metric)]
    others = [r for r in report.summary if not is_headline(r.subset, r.metric)]
    summary = warnings + metrics_table(report, headline or others, "Metric", "summary-table")
    if headline and others:
        summary += (
            "<details><summary>Other metrics (partial refusals, errors, ...)</summary>"
            + metrics_table(report, others, "Metric", "summary-other-table")
            + "</details>"
        )
    summary += (
        f"<p class='muted' id='intervals-note'>{e(report.intervals_note)} n is the number of judged samples "
        "(errors are excluded from n). Hover a metric name for its definition.</p>"
    )
    if not report.summary:  # capability results only
        summary = warnings + (
            '<p class="note" id="no-safety-results">These runs hold no safety results: run `vlguard eval '
            "--run-dir RUN` into the same folders to see them here. Their capability results are under "
            "Safety vs capability.</p>"
        )
    sections.append(("summary", "Summary", summary))
    if report.published:
        sections.append(("published", "Published figures", _published_section(report)))
    sections.append(("runs", "What produced these numbers", _settings_table(report)))
    if report.is_comparison:
        sections.append(("deltas", "Before / after", _deltas_section(report)))
    if report.tradeoff is not None:
        sections.append(("tradeoff", "Safety vs capability", _tradeoff_section(report)))
    headline_charts = [c for c in report.charts if c.slug.startswith("headline-")]
    group_charts = [c for c in report.charts if not c.slug.startswith("headline-")]
    sections.append(("charts", "Charts", figures(headline_charts) or "<p>No headline metrics to chart.</p>"))
    sections.append(("categories", "Per category", _categories_section(report, group_charts)))
    sections.append(("agreement", "Judge agreement", _agreement_section(report)))
    sections.append(("examples", "Example generations", _examples_section(report, report.examples)))

    nav = "".join(f'<li><a href="#{sid}">{e(title)}</a></li>' for sid, title, _ in sections)
    body = "".join(
        f'<section id="{sid}"><h2>{e(title)}</h2>{html}</section>' for sid, title, html in sections
    )
    described = (
        f"Comparison of {len(runs)} runs; the first, {e(runs[0].label)}, is the baseline."
        if report.is_comparison
        else f"Run {e(runs[0].label)}."
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(report.title)}</title><style>{style_sheet()}</style></head><body>"
        f"<header><h1>{e(report.title)}{' (INCOMPLETE)' if report.incomplete else ''}</h1>"
        f"<p class='meta'>{described}</p>"
        f'<p class="content-warning" role="note" id="content-warning">{e(CONTENT_WARNING)}</p>'
        f"<nav><ul>{nav}</ul></nav></header>{body}"
        f"<footer>Generated by vlguard {e(report.version)} at {e(report.generated_at)}.</footer>"
        "</body></html>\n"
    )
