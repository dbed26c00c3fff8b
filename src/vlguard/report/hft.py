"""The report of harmful fine-tuning sweeps (``vlguard hft``): the papers' table, every cell, and
HS-vs-p / FA-vs-p charts.

``write_hft_report([OUTPUT, ...], out)`` reads each sweep's ``summary.json`` (and the evaluations of
the start model in ``reference/``). Sweeps whose settings differ by their seed alone
(:func:`vlguard.hft.config.experiment_settings` of their ``hft_config.yaml``) are seeds of one
experiment; other sweeps are shown apart, each under its label (``--label``, or the settings that tell
it apart).

* **The papers' table** (:class:`PaperTable`, one per experiment), as Vaccine, Lisa and Booster print
  theirs: rows are the defences, columns "clean" (p = 0), each harmful ratio and the average over those
  columns, in a Harmful Score block and a Finetune Accuracy block; each cell is the mean over seeds ± the
  sample standard deviation (the average: of each seed's average over the ratios).
* **Every cell** in long format, one row per (experiment, harmful ratio, defence): the mean over seeds
  with the spread (min – max, and the sample standard deviation), its own rows, counts and chart lines;
  a sweep alone shows each number with its confidence interval.

The HTML page reuses the evaluation report's style sheet, chart colours and Content-Security-Policy: one
self-contained file with no script and no request. ``--format csv`` writes the papers' table.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlguard import __version__
from vlguard.errors import VLGuardError
from vlguard.hft.layout import Layout
from vlguard.report.charts import Chart
from vlguard.runs import MANIFEST

CHART_COLOURS = ("#8c8c8c", "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00")
REFERENCE = "start model"


def is_hft_folder(path: str | Path) -> bool:
    """Whether ``path`` is the output folder of ``vlguard hft`` (not an evaluation run folder)."""
    return Layout(Path(path)).config_file.is_file() and not (Path(path) / MANIFEST).is_file()


@dataclass(frozen=True)
class Stat:
    """One number over seeds: mean, spread, and the confidence interval when there is a single seed."""

    values: tuple[float, ...]
    ci: tuple[float, float] | None = None

    @property
    def mean(self) -> float:
        """Mean over seeds."""
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float | None:
        """Sample standard deviation over seeds (None for one seed)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def low(self) -> float:
        """Lower end of the error bar: the lowest seed, or the CI's lower end for one seed."""
        if len(self.values) == 1 and self.ci is not None:
            return self.ci[0]
        return min(self.values)

    @property
    def high(self) -> float:
        """Upper end of the error bar: the highest seed, or the CI's upper end for one seed."""
        if len(self.values) == 1 and self.ci is not None:
            return self.ci[1]
        return max(self.values)

    def text(self) -> str:
        """``42.1%`` with ``[CI]`` (one seed) or ``± sd (min–max)`` (several)."""
        main = f"{100 * self.mean:.1f}%"
        if len(self.values) > 1:
            assert self.sd is not None
            return f"{main} ± {100 * self.sd:.1f} ({100 * min(self.values):.1f}–{100 * max(self.values):.1f})"
        if self.ci is not None:
            return f"{main} [{100 * self.ci[0]:.1f}–{100 * self.ci[1]:.1f}]"
        return main


@dataclass(frozen=True)
class PaperBlock:
    """One block of the papers' table: a metric, its columns, and one row of numbers per defence.

    ``columns`` are the harmful ratios (None: the average column); ``rows`` map a defence to one
    :class:`Stat` per column, None where no sweep has that cell.
    """

    metric: str  # "harmful_score" or "finetune_accuracy"
    title: str
    columns: tuple[float | None, ...]
    rows: tuple[tuple[str, tuple[Stat | None, ...]], ...]


@dataclass(frozen=True)
class PaperTable:
    """The papers' layout: a Harmful Score block and a Finetune Accuracy block (see the module doc)."""

    blocks: tuple[PaperBlock, ...]
    n_seeds: int
    experiment: str = ""  # the label of its experiment ("" for the only one, unlabelled)


def column_label(ratio: float | None) -> str:
    """``clean`` for p = 0, ``p=0.1`` for a ratio, ``average`` for the average column (the papers' heads)."""
    if ratio is None:
        return "average"
    return "clean" if ratio == 0 else f"p={ratio:g}"


@dataclass(frozen=True)
class HFTRow:
    """One (harmful ratio, defence) cell of one experiment, over its seeds."""

    harmful_ratio: float | None  # None for the start model (before the user's fine-tuning)
    defence: str
    harmful_score: Stat
    finetune_accuracy: Stat
    counts: dict[str, int]
    seeds: tuple[int, ...]
    experiment: str = ""  # the label of its experiment (see Experiment)


@dataclass(frozen=True)
class Experiment:
    """Sweeps whose settings differ by their seed alone: pooled, cell by cell, as seeds."""

    label: str
    folders: tuple[str, ...]
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class HFTReport:
    """Everything the HFT report shows."""

    title: str
    folders: tuple[str, ...]
    experiments: tuple[Experiment, ...]
    rows: tuple[HFTRow, ...]
    papers: tuple[PaperTable, ...]  # one per experiment, in experiment order
    hs_judge: str
    hs_stand_in: bool
    hs_bench: str | None
    fa_metric: str
    fa_bench: str | None
    charts: tuple[Chart, ...]
    warnings: tuple[str, ...]
    generated_at: str

    @property
    def labelled(self) -> bool:
        """Whether rows say which experiment they belong to (several, or labels given)."""
        return len(self.experiments) > 1 or any(x.label for x in self.experiments)


def _stat(rows: Sequence[dict[str, Any]], key: str) -> Stat:
    values = tuple(float(r[key]) for r in rows)
    ci = rows[0].get(f"{key}_ci") if len(rows) == 1 else None
    return Stat(values, (float(ci[0]), float(ci[1])) if ci else None)


def _reference_row(folder: Path, hs_judge: str) -> dict[str, Any] | None:
    from vlguard.hft.summary import SummaryError, measured

    reference = Layout(folder).reference
    if not reference.evaluated():
        return None
    try:
        return measured(reference.hs, reference.fa, hs_judge)
    except SummaryError:
        return None


def build_hft_report(
    folders: Sequence[str | Path], title: str | None = None, labels: Sequence[str] | None = None
) -> HFTReport:
    """Read the sweeps, pool those that differ by their seed alone, and aggregate each cell over seeds.

    ``labels`` names each folder (``--label``, in folder order); an experiment's label is its folders'
    labels. Without labels, experiments are named by the settings that tell them apart.
    """
    from vlguard.hft.summary import read_summary

    if not folders:
        raise VLGuardError("an HFT report needs at least one vlguard hft output folder")
    if labels is not None and len(labels) != len(folders):
        raise VLGuardError(
            f"{len(labels)} label(s) given for {len(folders)} sweep folder(s): give one per folder"
        )
    per_folder: list[list[dict[str, Any]]] = []
    settings: list[dict[str, Any]] = []
    for folder in folders:
        path = Layout(Path(folder)).summary
        if not path.is_file():
            raise VLGuardError(
                f"{folder}: no summary.json yet; finish the sweep first (rerun vlguard hft with its config)"
            )
        rows = read_summary(path)
        if not rows:
            raise VLGuardError(f"{path}: the summary has no cells")
        per_folder.append(rows)
        settings.append(_experiment_of(Path(folder)))
    groups: dict[str, list[int]] = {}  # experiment settings (canonical JSON) → folder indices
    for index, experiment in enumerate(settings):
        groups.setdefault(json.dumps(experiment, sort_keys=True, default=str), []).append(index)
    members = list(groups.values())
    names = _experiment_labels(members, settings, folders, labels)
    first = per_folder[0][0]
    warnings: list[str] = []
    judges = {r.get("harmful_score_judge") for rows in per_folder for r in rows}
    if len(judges) > 1:
        warnings.append(
            f"the sweeps used different Harmful Score judges ({', '.join(sorted(map(str, judges)))})"
        )
    experiments: list[Experiment] = []
    table: list[HFTRow] = []
    papers: list[PaperTable] = []
    fa_metric = str(first.get("finetune_accuracy_metric", "accuracy"))
    for name, indices in zip(names, members, strict=True):
        rows_of = [per_folder[i] for i in indices]
        seeds = [rows[0].get("seed") for rows in rows_of]
        experiments.append(
            Experiment(name, tuple(str(folders[i]) for i in indices), tuple(int(s or 0) for s in seeds))
        )
        where = f"{name}: " if len(members) > 1 else ""
        if len(set(seeds)) < len(seeds):
            warnings.append(
                f"{where}several sweeps share a seed ({seeds}): they are not independent repetitions"
            )
        experiment_rows, missing = _experiment_rows([Path(folders[i]) for i in indices], rows_of, name)
        if missing:
            warnings.append(
                f"{where}cells missing from some sweeps (shown over fewer seeds): {', '.join(missing)}"
            )
        table += experiment_rows
        defence_order = list(dict.fromkeys(str(r["defence"]) for rows in rows_of for r in rows))
        papers.append(build_paper_table(rows_of, defence_order, fa_metric, experiment=name))
    if title is None:
        title = f"Harmful fine-tuning: {first.get('finetune_accuracy_bench') or 'task'}, " + (
            f"{len(folders)} seed(s)" if len(experiments) == 1 else " vs ".join(x.label for x in experiments)
        )
    report = HFTReport(
        title=title,
        folders=tuple(str(f) for f in folders),
        experiments=tuple(experiments),
        rows=tuple(table),
        papers=tuple(papers),
        hs_judge=str(first.get("harmful_score_judge")),
        hs_stand_in=bool(first.get("harmful_score_stand_in")),
        hs_bench=first.get("harmful_score_bench"),
        fa_metric=fa_metric,
        fa_bench=first.get("finetune_accuracy_bench"),
        charts=(),
        warnings=tuple(warnings),
        generated_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
    return dataclasses.replace(report, charts=tuple(build_hft_charts(report)))


def _experiment_of(folder: Path) -> dict[str, Any]:
    """The experiment settings of a sweep folder (its ``hft_config.yaml`` without seed and the like)."""
    import yaml

    from vlguard.hft.config import experiment_settings

    path = Layout(folder).config_file
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:
        raise VLGuardError(
            f"{path}: unreadable ({err}); it says which sweeps are seeds of one experiment"
        ) from None
    if not isinstance(loaded, dict):
        raise VLGuardError(f"{path}: not a vlguard hft config (a mapping of keys)")
    return experiment_settings(loaded)


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix.rstrip("."): tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flat(value, f"{prefix}{key}."))
    return flat


def _experiment_labels(
    members: list[list[int]],
    settings: list[dict[str, Any]],
    folders: Sequence[str | Path],
    labels: Sequence[str] | None,
) -> list[str]:
    """A label per experiment: its folders' ``labels``, or the settings that differ between experiments
    ("" for a single experiment without labels: nothing to tell apart)."""
    if labels is not None:
        return [" + ".join(dict.fromkeys(labels[i] for i in indices)) for indices in members]
    if len(members) == 1:
        return [""]
    flats = [_flat(settings[indices[0]]) for indices in members]
    keys = sorted(
        {k for flat in flats for k in flat if len({json.dumps(f.get(k), default=str) for f in flats}) > 1}
    )
    names = []
    for flat, indices in zip(flats, members, strict=True):
        shown = ", ".join(f"{key}={flat.get(key)}" for key in keys[:3]) + (" ..." if len(keys) > 3 else "")
        names.append(shown or Path(str(folders[indices[0]])).name)
    if len(set(names)) < len(names):  # differences beyond the three shown: the folder names tell them apart
        names = [f"{name} ({Path(str(folders[i[0]])).name})" for name, i in zip(names, members, strict=True)]
    return names


def _experiment_rows(
    folders: list[Path], per_folder: list[list[dict[str, Any]]], label: str
) -> tuple[list[HFTRow], list[str]]:
    """The rows of one experiment (its start model first, then its cells) and its cells some seeds lack."""
    references: list[dict[str, Any]] = []
    for folder, rows in zip(folders, per_folder, strict=True):
        reference = _reference_row(folder, str(rows[0].get("harmful_score_judge")))
        if reference is not None:
            references.append({**reference, "seed": rows[0].get("seed")})
    cells: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for rows in per_folder:
        for row in rows:
            cells.setdefault((float(row["harmful_ratio"]), str(row["defence"])), []).append(row)
    missing = [f"p={p:g} {d}" for (p, d), rs in cells.items() if len(rs) != len(per_folder)]
    defence_order = list(dict.fromkeys(str(r["defence"]) for rows in per_folder for r in rows))
    table: list[HFTRow] = []
    if references:
        table.append(
            HFTRow(
                None,
                REFERENCE,
                _stat(references, "harmful_score"),
                _stat(references, "finetune_accuracy"),
                {},
                tuple(int(r["seed"]) for r in references),
                label,
            )
        )
    for (ratio, defence), rows in sorted(
        cells.items(), key=lambda item: (item[0][0], defence_order.index(item[0][1]))
    ):
        table.append(
            HFTRow(
                ratio,
                defence,
                _stat(rows, "harmful_score"),
                _stat(rows, "finetune_accuracy"),
                dict(rows[0].get("counts", {})),
                tuple(int(r.get("seed", 0)) for r in rows),
                label,
            )
        )
    return table, missing


def build_paper_table(
    per_folder: Sequence[Sequence[dict[str, Any]]],
    defences: Sequence[str],
    fa_metric: str,
    experiment: str = "",
) -> PaperTable:
    """The papers' layout from the summary rows of one experiment's sweeps (one sweep per seed).

    A cell's :class:`Stat` holds one value per sweep that has it; the average column holds each sweep's
    mean over the ratios it has for that defence (all of them, unless a sweep is incomplete).
    """
    ratios = sorted({float(r["harmful_ratio"]) for rows in per_folder for r in rows})
    columns: tuple[float | None, ...] = (*ratios, None)
    fa_title = "Finetune Accuracy" if fa_metric == "accuracy" else "Finetune Accuracy (win rate)"
    blocks = []
    for metric, title in (("harmful_score", "Harmful Score"), ("finetune_accuracy", fa_title)):
        rows = []
        for defence in defences:
            per_seed = [
                {float(r["harmful_ratio"]): float(r[metric]) for r in sweep if r["defence"] == defence}
                for sweep in per_folder
            ]
            per_seed = [cells for cells in per_seed if cells]
            stats: list[Stat | None] = []
            for ratio in ratios:
                values = tuple(cells[ratio] for cells in per_seed if ratio in cells)
                stats.append(Stat(values) if values else None)
            averages = tuple(statistics.fmean(cells.values()) for cells in per_seed)
            stats.append(Stat(averages) if averages else None)
            rows.append((defence, tuple(stats)))
        blocks.append(PaperBlock(metric, title, columns, tuple(rows)))
    return PaperTable(tuple(blocks), len(per_folder), experiment)


def paper_cell_text(stat: Stat | None) -> str:
    """A cell of the papers' table, in percent: ``12.3`` (one seed) or ``12.3 ± 1.0`` (mean ± sd over seeds)."""
    if stat is None:
        return "–"
    if stat.sd is None:
        return f"{100 * stat.mean:.1f}"
    return f"{100 * stat.mean:.1f} ± {100 * stat.sd:.1f}"


def paper_table_rows(papers: Sequence[PaperTable]) -> list[dict[str, Any]]:
    """The papers' tables as JSON-ready rows: one per experiment, block and defence, a column per ratio
    and the average (mean over seeds) with its ``_sd`` (None for one seed); ``experiment`` when several."""
    out = []
    for paper in papers:
        for block in paper.blocks:
            for defence, stats in block.rows:
                row: dict[str, Any] = {"block": block.metric, "defence": defence}
                if len(papers) > 1 or paper.experiment:
                    row = {"experiment": paper.experiment, **row}
                out.append(_paper_row(row, block, stats))
    return out


def _paper_row(row: dict[str, Any], block: PaperBlock, stats: tuple[Stat | None, ...]) -> dict[str, Any]:
    for column, stat in zip(block.columns, stats, strict=True):
        label = column_label(column)
        row[label] = stat.mean if stat is not None else None
        row[f"{label}_sd"] = stat.sd if stat is not None else None
    row["n_seeds"] = max((len(s.values) for s in stats if s is not None), default=0)
    return row


# ---- charts ------------------------------------------------------------------------------------------


def _hs_label(report: HFTReport) -> str:
    if report.hs_stand_in:
        return f"Harmful Score* ({report.hs_judge} ASR, stand-in)"
    return f"Harmful Score ({report.hs_judge})"


def _fa_label(report: HFTReport) -> str:
    name = "Finetune Accuracy" if report.fa_metric == "accuracy" else "Helpfulness (win rate)"
    return f"{name} ({report.fa_bench})" if report.fa_bench else name


def _line_chart(report: HFTReport, attribute: str, ylabel: str) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5.2, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    lines = list(dict.fromkeys((r.experiment, r.defence) for r in report.rows if r.harmful_ratio is not None))
    for index, (experiment, defence) in enumerate(lines):
        rows = [
            r
            for r in report.rows
            if (r.experiment, r.defence) == (experiment, defence) and r.harmful_ratio is not None
        ]
        xs = [100 * (r.harmful_ratio or 0.0) for r in rows]
        stats = [getattr(r, attribute) for r in rows]
        ys = [100 * s.mean for s in stats]
        low = [max(0.0, 100 * (s.mean - s.low)) for s in stats]
        high = [max(0.0, 100 * (s.high - s.mean)) for s in stats]
        axes.errorbar(
            xs, ys, yerr=[low, high], marker="o", capsize=3, label=_named(defence, experiment),
            color=CHART_COLOURS[(index + 1) % len(CHART_COLOURS)],
        )  # fmt: skip
    references = [r for r in report.rows if r.harmful_ratio is None]
    for index, reference in enumerate(references):
        axes.axhline(
            100 * getattr(reference, attribute).mean,
            color=CHART_COLOURS[0],
            linestyle=("--", ":", "-.")[index % 3],
            label=_named(REFERENCE, reference.experiment),
        )
    axes.set_xlabel("harmful ratio p (%)")
    axes.set_ylabel(ylabel)
    axes.set_ylim(0, 105)
    axes.grid(alpha=0.3)
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(frameon=False, fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})  # no date: same inputs, same bytes
    return buffer.getvalue()


def _named(name: str, experiment: str) -> str:
    """A row's name with its experiment's label (when the report has several, or labels)."""
    return f"{name} ({experiment})" if experiment else name


def _describe(report: HFTReport, attribute: str) -> str:
    parts = [
        f"{_named(r.defence, r.experiment)} at p={100 * r.harmful_ratio:g}%: {100 * getattr(r, attribute).mean:.1f}%"
        for r in report.rows
        if r.harmful_ratio is not None
    ]
    return "; ".join(parts)


def build_hft_charts(report: HFTReport) -> list[Chart]:
    """HS vs p and FA vs p, one line per defence (error bars: seed range, or the CI for one seed)."""
    charts = []
    axis_labels = {
        "harmful_score": "Harmful Score* (%)" if report.hs_stand_in else "Harmful Score (%)",
        "finetune_accuracy": ("Finetune Accuracy" if report.fa_metric == "accuracy" else "Win rate") + " (%)",
    }
    for attribute, slug, label in (
        ("harmful_score", "hs-vs-p", _hs_label(report)),
        ("finetune_accuracy", "fa-vs-p", _fa_label(report)),
    ):
        title = f"{label} vs harmful ratio"
        charts.append(
            Chart(
                slug=slug,
                title=title,
                alt=f"{title}: {_describe(report, attribute)}",
                png=_line_chart(report, attribute, axis_labels[attribute]),
            )
        )
    return charts


# ---- rendering ---------------------------------------------------------------------------------------


def _ratio_text(row: HFTRow) -> str:
    return "–" if row.harmful_ratio is None else f"{100 * row.harmful_ratio:g}%"


def _counts_text(counts: dict[str, int]) -> str:
    if not counts:
        return "–"
    text = f"{counts.get('task', 0)} / {counts.get('harmful', 0)} / {counts.get('safety', 0)}"
    return text + (f" (+{counts['aux_safety']} aux)" if counts.get("aux_safety") else "")


def _spread_note(report: HFTReport) -> str:
    """How the numbers are aggregated: over the seeds of each experiment, or one seed with its CI."""
    pooled = "Mean over {n} seeds ± sample standard deviation (lowest–highest seed); error bars: lowest–highest seed."
    alone = "One seed: values with their 95% confidence intervals (also the error bars)."
    if len(report.experiments) == 1:
        n_seeds = len(report.experiments[0].folders)
        return pooled.format(n=n_seeds) if n_seeds > 1 else alone
    parts = [
        f"{x.label}: {len(x.folders)} seed(s) ({', '.join(map(str, x.seeds))})" for x in report.experiments
    ]
    return (
        "Only sweeps whose settings differ by their seed alone are pooled, each cell as the mean over their "
        "seeds ± sample standard deviation (lowest–highest seed; the error bars); a sweep alone shows its "
        f"values with their 95% confidence intervals. Sweeps shown apart: {'; '.join(parts)}."
    )


def render_hft_html(report: HFTReport) -> str:
    """The report as one self-contained HTML page (same CSP and style sheet as the evaluation report)."""
    from vlguard.report.html import CSP, e, figures, style_sheet

    def stat_cell(row: HFTRow, attribute: str) -> str:
        stat: Stat = getattr(row, attribute)
        ratio = "" if row.harmful_ratio is None else json.dumps(row.harmful_ratio)
        return (
            f'<td class="num" data-experiment="{e(row.experiment)}" data-defence="{e(row.defence)}" '
            f'data-ratio="{e(ratio)}" data-metric="{e(attribute)}" '
            f'data-value="{e(json.dumps(stat.mean))}">{e(stat.text())}</td>'
        )

    def experiment_cell(row: HFTRow) -> str:
        return f"<td>{e(row.experiment)}</td>" if report.labelled else ""

    body = "".join(
        f"<tr>{experiment_cell(r)}<td>{e(_ratio_text(r))}</td><td>{e(r.defence)}</td>{stat_cell(r, 'harmful_score')}"
        f"{stat_cell(r, 'finetune_accuracy')}<td>{e(_counts_text(r.counts))}</td>"
        f"<td>{e(', '.join(map(str, r.seeds)))}</td></tr>"
        for r in report.rows
    )
    hs_head = "Harmful Score*" if report.hs_stand_in else "Harmful Score"
    table = (
        '<table class="metrics" id="hft-table"><thead><tr>'
        + ("<th>Sweep</th>" if report.labelled else "")
        + "<th>Harmful ratio p</th><th>Defence</th>"
        f"<th>{e(hs_head)} ↓</th><th>{e(_fa_label(report))} ↑</th><th>Trained on: task / harmful / safety</th>"
        f"<th>Seeds</th></tr></thead><tbody>{body}</tbody></table>"
    )
    notes = [f"<p class='muted'>{e(_spread_note(report))}</p>"]
    if report.hs_stand_in:
        notes.insert(
            0,
            f"<p class='note' id='stand-in'>* Harmful Score measured with the offline <strong>{e(report.hs_judge)}</strong> judge: "
            "the share of harmful prompts answered without a refusal. It is a stand-in for the moderation "
            "judge of the papers (beaver-dam), not the same number.</p>",
        )
    warnings = (
        "<div class='warnings'><strong>Warnings</strong><ul>"
        + "".join(f"<li>{e(w)}</li>" for w in report.warnings)
        + "</ul></div>"
        if report.warnings
        else ""
    )
    sources = "".join(
        f"<li><code>{e(f)}</code>{(' (' + e(x.label) + ')') if x.label else ''}</li>"
        for x in report.experiments
        for f in x.folders
    )
    what = (
        f"<p>Harmful Score: <strong>{e(report.hs_judge)}</strong> judge on <strong>{e(report.hs_bench)}</strong> "
        f"(held-out harmful prompts). Finetune Accuracy: {e(report.fa_metric)} on <strong>{e(report.fa_bench)}</strong>. "
        f"The “{REFERENCE}” row is the model before the user's fine-tuning.</p><p>Sweep folders (each cell's "
        f"run folders are under <code>cells/</code>):</p><ul>{sources}</ul>"
    )
    sections = [
        ("papers-table", "Harmful Score and Finetune Accuracy", warnings + render_paper_html(report)),
        ("summary", "Every cell", table + "".join(notes)),
        ("charts", "Versus the harmful ratio", figures(report.charts)),
        ("runs", "What produced these numbers", what),
    ]
    nav = "".join(f'<li><a href="#{sid}">{e(t)}</a></li>' for sid, t, _ in sections)
    content = "".join(f'<section id="{sid}"><h2>{e(t)}</h2>{html}</section>' for sid, t, html in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(report.title)}</title><style>{style_sheet()}</style></head><body>"
        f"<header><h1>{e(report.title)}</h1><nav><ul>{nav}</ul></nav></header>{content}"
        f"<footer>Generated by vlguard {e(__version__)} at {e(report.generated_at)}.</footer></body></html>\n"
    )


def _paper_note(report: HFTReport, paper: PaperTable) -> str:
    seeds = paper.n_seeds
    spread = (
        f"mean over {seeds} seeds ± sample standard deviation; average: of each seed's average over the ratios"
        if seeds > 1
        else "one seed (confidence intervals in the cells table)"
    )
    reference = next(
        (r for r in report.rows if r.harmful_ratio is None and r.experiment == paper.experiment), None
    )
    start = (
        f" Start model (before the user's fine-tuning): Harmful Score {paper_cell_text(reference.harmful_score)}, "
        f"{_fa_label(report)} {paper_cell_text(reference.finetune_accuracy)}."
        if reference is not None
        else ""
    )
    star = " * stand-in judge (see below)." if report.hs_stand_in else ""
    return f"In %, {spread}; clean = harmful ratio p = 0.{start}{star}"


def render_paper_html(report: HFTReport) -> str:
    """The papers' tables (one per experiment): one header row per block, a row per defence (HTML)."""
    from vlguard.report.html import e

    parts = []
    for index, paper in enumerate(report.papers):
        caption = f"<h3>{e(paper.experiment)}</h3>" if report.labelled else ""
        parts.append(
            caption + _paper_html(report, paper, "hft-paper-table" + (f"-{index + 1}" if index else ""))
        )
    return "".join(parts)


def _paper_html(report: HFTReport, paper: PaperTable, table_id: str) -> str:
    from vlguard.report.html import e

    columns = paper.blocks[0].columns if paper.blocks else ()
    head = "".join(f"<th>{e(column_label(c))}</th>" for c in columns)
    body = []
    for block in paper.blocks:
        title = block.title + ("*" if block.metric == "harmful_score" and report.hs_stand_in else "")
        arrow = "↓" if block.metric == "harmful_score" else "↑"
        body.append(
            f'<tr class="block"><th scope="rowgroup" colspan="{len(columns) + 1}">{e(title)} {arrow}</th></tr>'
        )
        for defence, stats in block.rows:
            cells = "".join(
                f'<td class="num" data-block="{e(block.metric)}" data-defence="{e(defence)}" '
                f'data-column="{e(column_label(c))}" data-value="{e(json.dumps(s.mean if s else None))}" '
                f'data-sd="{e(json.dumps(s.sd if s else None))}" data-seeds="{len(s.values) if s else 0}">'
                f"{e(paper_cell_text(s))}</td>"
                for c, s in zip(block.columns, stats, strict=True)
            )
            body.append(f'<tr><th scope="row">{e(defence)}</th>{cells}</tr>')
    return (
        f'<table class="metrics" id="{e(table_id)}"><thead><tr><th>Defence</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table><p class='muted'>{e(_paper_note(report, paper))}</p>"
    )


def render_paper_markdown(report: HFTReport) -> list[str]:
    """The papers' table as markdown: a table per block (rows = defences, columns = clean, p, average)."""
    from vlguard.report.markdown import cell_text

    lines: list[str] = []
    for paper in report.papers:
        if report.labelled:
            lines += [f"### {cell_text(paper.experiment)}", ""]
        lines += _paper_markdown(report, paper)
    return lines


def _paper_markdown(report: HFTReport, paper: PaperTable) -> list[str]:
    from vlguard.report.markdown import cell_text

    lines: list[str] = []
    for block in paper.blocks:
        title = block.title + ("\\*" if block.metric == "harmful_score" and report.hs_stand_in else "")
        arrow = "↓" if block.metric == "harmful_score" else "↑"
        lines += [f"**{title}** {arrow}", ""]
        lines.append("| Defence | " + " | ".join(column_label(c) for c in block.columns) + " |")
        lines.append("|---|" + "---|" * len(block.columns))
        for defence, stats in block.rows:
            lines.append(f"| {cell_text(defence)} | " + " | ".join(paper_cell_text(s) for s in stats) + " |")
        lines.append("")
    lines += [cell_text(_paper_note(report, paper)), ""]
    return lines


def render_hft_markdown(report: HFTReport, chart_files: dict[str, str]) -> str:
    """The report as markdown, charts linked as PNG files beside it."""
    from vlguard.report.markdown import cell_text

    hs_head = "Harmful Score*" if report.hs_stand_in else "Harmful Score"
    lines = [f"# {cell_text(report.title)}", ""]
    lines += [f"> Warning: {cell_text(w)}" for w in report.warnings]
    sweep_head, sweep_rule = ("| Sweep ", "|---") if report.labelled else ("", "")
    lines += [
        "## Harmful Score and Finetune Accuracy",
        "",
        *render_paper_markdown(report),
        "## Every cell",
        "",
        f"{sweep_head}| Harmful ratio p | Defence | {hs_head} ↓ | {cell_text(_fa_label(report))} ↑ | Trained on: task / harmful / safety | Seeds |",
        f"{sweep_rule}|---|---|---|---|---|---|",
    ]
    for r in report.rows:
        sweep = f"| {cell_text(r.experiment)} " if report.labelled else ""
        lines.append(
            f"{sweep}| {_ratio_text(r)} | {cell_text(r.defence)} | {r.harmful_score.text()} | {r.finetune_accuracy.text()} "
            f"| {_counts_text(r.counts)} | {', '.join(map(str, r.seeds))} |"
        )
    lines.append("")
    if report.hs_stand_in:
        lines += [
            f"\\* Harmful Score measured with the offline {report.hs_judge} judge (share of harmful prompts answered "
            "without a refusal): a stand-in for the papers' moderation judge (beaver-dam), not the same number.",
            "",
        ]
    lines += [_spread_note(report), ""]
    for chart in report.charts:
        lines += [f"![{cell_text(chart.alt)}]({chart_files.get(chart.slug, '')})", ""]
    lines += [
        f"Harmful Score: {report.hs_judge} judge on {report.hs_bench}; Finetune Accuracy: {report.fa_metric} on {report.fa_bench}.",
        "",
    ]
    return "\n".join(lines)


def hft_table_rows(report: HFTReport) -> list[dict[str, Any]]:
    """The table as JSON-ready rows (``--format json`` / ``csv``)."""
    rows = []
    for r in report.rows:
        row: dict[str, Any] = {
            "experiment": r.experiment,
            "harmful_ratio": r.harmful_ratio,
            "defence": r.defence,
            "seeds": list(r.seeds),
        }
        for name in ("harmful_score", "finetune_accuracy"):
            stat: Stat = getattr(r, name)
            row.update(
                {
                    name: stat.mean,
                    f"{name}_sd": stat.sd,
                    f"{name}_low": stat.low,
                    f"{name}_high": stat.high,
                }
            )
        row["harmful_score_stand_in"] = report.hs_stand_in
        row.update({f"n_{k}": v for k, v in r.counts.items()})
        rows.append(row)
    return rows


def write_hft_report(
    folders: Sequence[str | Path],
    out_dir: str | Path,
    *,
    fmt: str = "html",
    title: str | None = None,
    labels: Sequence[str] | None = None,
) -> list[Path]:
    """Write the HFT report into ``out_dir``: ``report.html`` + ``report.md`` + charts, or JSON / CSV.

    ``labels`` names each folder (see :func:`build_hft_report`).
    """
    import csv

    report = build_hft_report(folders, title, labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        path = out / "hft_report.json"
        exported = {
            "title": report.title,
            "paper_table": paper_table_rows(report.papers),
            "rows": hft_table_rows(report),
            "warnings": list(report.warnings),
        }
        path.write_text(json.dumps(exported, indent=2) + "\n")
        return [path]
    if fmt == "csv":
        # the papers' layout: a row per block and defence, a column per ratio and the average
        path = out / "hft_table.csv"
        rows = paper_table_rows(report.papers)
        keys = list(dict.fromkeys(k for row in rows for k in row))
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            for row in rows:
                writer.writerow(
                    {
                        k: (
                            ";".join(map(str, v))
                            if isinstance(v, list)
                            else ("" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
                        )
                        for k, v in row.items()
                    }
                )
        return [path]
    charts_dir = out / "charts"
    charts_dir.mkdir(exist_ok=True)
    chart_files: dict[str, str] = {}
    written: list[Path] = []
    for chart in report.charts:
        path = charts_dir / f"{chart.slug}.png"
        path.write_bytes(chart.png)
        chart_files[chart.slug] = f"charts/{path.name}"
        written.append(path)
    html_path, md_path = out / "report.html", out / "report.md"
    html_path.write_text(render_hft_html(report), encoding="utf-8")
    md_path.write_text(render_hft_markdown(report, chart_files), encoding="utf-8")
    return [html_path, md_path, *written]
