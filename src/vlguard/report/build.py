"""Build a report from run folders and write it: ``report.html`` + ``report.md`` (+ chart PNGs), or
the tables as JSON / CSV."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vlguard import __version__
from vlguard.errors import VLGuardError
from vlguard.fileio import atomic_write_bytes, atomic_write_text, check_output_dir
from vlguard.report.charts import build_charts
from vlguard.report.document import Report
from vlguard.report.examples import ImageStatus, open_images, select_examples
from vlguard.report.export import write_csv, write_json
from vlguard.report.html import render_html
from vlguard.report.intervals import delta_intervals, intervals_note
from vlguard.report.loading import RunData, load_runs
from vlguard.report.markdown import render_markdown
from vlguard.report.published import published_rows
from vlguard.report.tables import (
    comparability_warnings,
    comparison_rows,
    incompleteness_notes,
    partial_notes,
    primary_judge,
    summary_rows,
)
from vlguard.report.tradeoff import build_tradeoff, utility_warnings

logger = logging.getLogger(__name__)

FORMATS = ("html", "json", "csv")


@dataclass(frozen=True)
class ReportFiles:
    """What ``write_report`` wrote: the main file (``report.html``, ``report.json`` or ``metrics.csv``)
    and every file."""

    main: Path
    files: tuple[Path, ...]


def build_report(
    runs: Sequence[RunData],
    *,
    title: str | None = None,
    examples_per_subset: int = 3,
    with_images: bool = True,
    with_charts: bool = True,
) -> Report:
    """Compute every table, chart and example of a report over ``runs`` (the first is the baseline).

    The table exports need neither charts nor examples: they turn them off to stay fast.
    """
    if not runs:
        raise VLGuardError("a report needs at least one run")
    judge = primary_judge(runs)
    if with_images:
        images, status = open_images(runs)
    else:
        images, status = None, ImageStatus(False, "Thumbnails were turned off for this report.")
    if title is None:
        labels = [run.label for run in runs]
        title = (
            f"Safety report: {labels[0]}"
            if len(labels) == 1
            else f"Safety report: {labels[0]} vs {', '.join(labels[1:])}"
        )
    return Report(
        title=title,
        runs=tuple(runs),
        summary=tuple(summary_rows(runs)),
        intervals_note=intervals_note(runs),
        delta_intervals=delta_intervals(runs),
        groups={group: tuple(comparison_rows(runs, group)) for group in ("category", "subcategory")},
        charts=tuple(build_charts(runs)) if with_charts else (),
        warnings=tuple(partial_notes(runs) + comparability_warnings(runs) + utility_warnings(runs)),
        incomplete=tuple(incompleteness_notes(runs)),
        examples=tuple(select_examples(runs, examples_per_subset, judge, images)),
        image_status=status,
        primary_judge=judge,
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        version=__version__,
        tradeoff=build_tradeoff(runs, judge, with_chart=with_charts),
        published=tuple(published_rows(runs)),
    )


def write_report(
    run_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    fmt: str = "html",
    labels: Sequence[str] | None = None,
    title: str | None = None,
    examples_per_subset: int = 3,
) -> ReportFiles:
    """Write a report over ``run_dirs`` into ``out_dir``.

    ``fmt="html"`` writes ``report.html`` (self-contained) and ``report.md`` with its charts under
    ``charts/``; ``json`` writes ``report.json``; ``csv`` writes ``metrics.csv``, ``agreement.csv``,
    ``runs.csv`` and, with capability results, ``utility.csv`` and ``costs.csv``. The first run is the
    baseline of every delta.
    """
    if fmt not in FORMATS:
        raise VLGuardError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = check_output_dir(out_dir, "--out folder")  # before reading anything
    runs = load_runs(run_dirs, labels)
    out.mkdir(parents=True, exist_ok=True)
    if fmt in ("json", "csv"):
        tables = build_report(runs, title=title, examples_per_subset=0, with_images=False, with_charts=False)
        files = write_json(tables, out) if fmt == "json" else write_csv(tables, out)
        return ReportFiles(main=files[0], files=tuple(files))

    report = build_report(runs, title=title, examples_per_subset=examples_per_subset)
    chart_dir = check_output_dir(out / "charts", "charts folder")
    chart_dir.mkdir(exist_ok=True)
    chart_files: dict[str, str] = {}
    written: list[Path] = []
    tradeoff_chart = report.tradeoff.chart if report.tradeoff is not None else None
    for chart in (*report.charts, *([tradeoff_chart] if tradeoff_chart is not None else [])):
        path = atomic_write_bytes(chart_dir / f"{chart.slug}.png", chart.png)
        chart_files[chart.slug] = f"charts/{path.name}"
        written.append(path)
    # Each file whole or not at all (temporary file + rename), like every file vlguard writes.
    html_path = atomic_write_text(out / "report.html", render_html(report))
    md_path = atomic_write_text(out / "report.md", render_markdown(report, chart_files))
    logger.info("wrote %s and %s", html_path, md_path)
    return ReportFiles(main=html_path, files=(html_path, md_path, *written))
