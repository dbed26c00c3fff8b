"""Published figures beside a run's numbers: the reference column of ``vlguard report``.

``published.json`` (shipped with vlguard, beside this module) holds the figures of the VLGuard paper's
results table and of the harmful fine-tuning papers' VLGuard rows, each with the benchmark, subset and
metric it belongs to, the model it was measured on, its source and what differs in the protocol
(docs/paper-table.md gives the command of each row). ``published_rows`` matches them to the runs of a
report: a figure applies to a run of its benchmark (and image mode, where the figure names one), and
the run's value comes from the judge closest to the publication's protocol when the run has it
(``refusal-paper`` for the VLGuard paper's string match), else from each judge the run has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from vlguard.errors import VLGuardError
from vlguard.fileio import parse_json
from vlguard.report.loading import MetricRow, RunData

PUBLISHED_FILE = "published.json"
_FIELDS = ("benchmark", "subset", "metric", "model", "value", "judge", "source", "note")


@dataclass(frozen=True)
class PublishedFigure:
    """One published number: what it measures (benchmark, subset, metric, image mode), on which model, by
    which protocol (``judge``: the vlguard judge closest to it, "" when unknown), and where it was published."""

    benchmark: str
    subset: str
    metric: str
    model: str
    value: float
    judge: str
    source: str
    note: str
    image_mode: str | None = None


@dataclass(frozen=True)
class PublishedRow:
    """A published figure next to the runs' numbers for the same benchmark, subset and metric.

    ``cells``: per run (in report order), the run's row by the judge shown (None: the run has no such row).
    """

    figure: PublishedFigure
    cells: tuple[MetricRow | None, ...]


@lru_cache(maxsize=1)
def published_figures() -> tuple[PublishedFigure, ...]:
    """Every figure of the shipped ``published.json`` (checked: a broken file is an installation error)."""
    raw = resources.files("vlguard.report").joinpath(PUBLISHED_FILE).read_text(encoding="utf-8")
    data = parse_json(raw)
    figures: list[PublishedFigure] = []
    for index, item in enumerate(data.get("figures", []) if isinstance(data, dict) else []):
        if not isinstance(item, dict) or any(key not in item for key in _FIELDS):
            raise VLGuardError(f"{PUBLISHED_FILE}: figure {index} lacks one of {', '.join(_FIELDS)}")
        value = item["value"]
        if not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
            raise VLGuardError(f"{PUBLISHED_FILE}: figure {index} has value {value!r}, not a share in [0, 1]")
        figures.append(
            PublishedFigure(**{key: item[key] for key in _FIELDS}, image_mode=item.get("image_mode"))
        )
    if not figures:
        raise VLGuardError(f"{PUBLISHED_FILE}: no figures (broken installation?)")
    return tuple(figures)


def _applies(figure: PublishedFigure, run: RunData) -> bool:
    info: dict[str, Any] = run.run_info
    if info.get("benchmark") != figure.benchmark:
        return False
    return figure.image_mode is None or info.get("image_mode") == figure.image_mode


def published_rows(runs: Sequence[RunData]) -> list[PublishedRow]:
    """Each published figure that applies to at least one of ``runs``, beside each run's number.

    A run's number is its row (group ``all``) for the figure's subset and metric by the figure's judge when
    the run has that judge, else one row per judge the run has (each its own published row).
    """
    rows: list[PublishedRow] = []
    for figure in published_figures():
        if not any(_applies(figure, run) for run in runs):
            continue
        candidates: dict[str, list[MetricRow | None]] = {}
        for index, run in enumerate(runs):
            found = {
                row.judge: row
                for row in run.metrics
                if _applies(figure, run)
                and row.group == "all"
                and row.subset == figure.subset
                and row.metric == figure.metric
            }
            judges = [figure.judge] if figure.judge in found else sorted(found)
            for judge in judges:
                candidates.setdefault(judge, [None] * len(runs))[index] = found[judge]
        for cells in candidates.values() or [[None] * len(runs)]:
            rows.append(PublishedRow(figure, tuple(cells)))
    return rows


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.2f} %"


def published_table(
    rows: Sequence[PublishedRow], runs: Sequence[RunData]
) -> tuple[list[str], list[list[str]]]:
    """The reference table as plain text cells (the HTML and markdown renderers escape them): headers,
    then one row per published figure and judge shown."""
    from vlguard.metric_registry import metric_label
    from vlguard.report.tables import subset_label

    headers = [
        "Subset",
        "Metric",
        "Published on",
        "Published",
        *(f"{run.label}" for run in runs),
        "Differences",
    ]
    body: list[list[str]] = []
    for row in rows:
        figure = row.figure
        subset = subset_label(figure.subset) + (f" ({figure.image_mode} images)" if figure.image_mode else "")
        cells = [subset, metric_label(figure.metric), figure.model, _pct(figure.value)]
        for cell in row.cells:
            cells.append(
                "–"
                if cell is None
                else f"{_pct(cell.value)} ({cell.judge}{', stand-in' if cell.stand_in else ''})"
            )
        protocol = f"published judge: {figure.judge}" if figure.judge else "published judge: not stated"
        cells.append("; ".join(part for part in (protocol, figure.note) if part))
        body.append(cells)
    return headers, body


def published_sources(rows: Sequence[PublishedRow]) -> list[str]:
    """The sources of the figures shown, each once, in order."""
    return list(dict.fromkeys(row.figure.source for row in rows))
