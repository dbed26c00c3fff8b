"""Safety against capability, one point per run, and what the change costs relative to the baseline.

The paper's claim has two halves: the attack success rate falls, and helpfulness is kept. This module
puts both on one page for several runs of one model (vanilla, post-hoc, mixed, LoRA / full, ...):

* **measures** of each run: harmfulness (the attack success rate pooled over every subset that should
  be refused, by the report's primary judge), over-refusal (pooled likewise over the subsets that should
  be answered), the pairwise win rate, and each capability task's headline score (``vlguard utility``);
* the **chart**: harmfulness against each helpfulness measure, one point per run with 95 % interval bars
  on both axes, and over-refusal per run beside it;
* the **cost row**: each later run's change to the baseline in every helpfulness measure and in
  over-refusal, with a 95 % interval of the change and a plain verdict only where the interval allows
  one ("no measurable cost", "costs 3.1 ± 1.2 points on mmbench_en_dev").

Intervals of a change: when both runs have per-item values (judgments per sample id; the engines'
per-document scores) the items are resampled together (a paired percentile bootstrap, keyed by item,
``vlguard.metrics.bootstrap_difference_ci``). Otherwise the change's interval is built from the two runs'
own intervals by the MOVER method (Newcombe's hybrid score interval when those are Wilson intervals;
the usual ``sqrt(se1² + se2²)`` when they are symmetric normal intervals). Without intervals there is
no verdict. A point counts in pooled rates as ``round(value × n)`` successes of ``n``.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vlguard.fileio import parse_json
from vlguard.metric_registry import metric_info
from vlguard.metrics import CI_LEVEL, bootstrap_difference_ci, metric_values, wilson_ci
from vlguard.report.charts import Chart
from vlguard.report.loading import RunData, UtilityScore
from vlguard.utility.results import task_file_name

logger = logging.getLogger(__name__)

HARM = "harm"
OVER_REFUSAL = "over_refusal"
HELPFULNESS = "helpfulness"
# Bootstrap resamples of a paired difference (seeded: the same runs give the same interval).
N_BOOTSTRAP = 2000


@dataclass(frozen=True)
class Measure:
    """One quantity compared across runs."""

    key: str
    label: str  # e.g. "ASR (unsafe + safe_unsafe, refusal judge)" or "mmlu (acc)"
    kind: str  # HARM, OVER_REFUSAL or HELPFULNESS
    unit: str  # "fraction" (shown in %, changes in percentage points) or "points"
    higher_is_better: bool

    def points(self, value: float) -> float:
        """``value`` on the scale changes are stated in: percentage points for fractions."""
        return 100 * value if self.unit == "fraction" else value

    def show(self, value: float | None) -> str:
        """``value`` for reading: ``12.3%`` for a fraction, ``61.50`` for points."""
        if value is None:
            return "–"
        return f"{100 * value:.1f}%" if self.unit == "fraction" else f"{value:.2f}"


@dataclass(frozen=True)
class Point:
    """A run's value of a measure with its 95 % interval, n, and per-item values when it has them."""

    value: float
    low: float | None
    high: float | None
    n: int
    items: Mapping[str, float] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Cost:
    """One later run's change to the baseline on one measure, with its interval and verdict."""

    run: str
    measure: Measure
    delta: float  # run - baseline, in the measure's own unit (a fraction for rates)
    low: float | None
    high: float | None
    method: str  # "paired bootstrap", "unpaired bootstrap", "MOVER from the runs' intervals", or "none"
    verdict: str  # "cost", "gain", "none" (no measurable change) or "unknown" (no interval)
    text: str


@dataclass(frozen=True)
class Tradeoff:
    """The trade-off section of a report."""

    measures: tuple[Measure, ...]
    points: dict[str, dict[str, Point]]  # run label -> measure key -> point
    costs: tuple[Cost, ...]
    verdicts: dict[str, str]  # later run label -> one-line verdict over all its costs
    chart: Chart | None
    unplaced: tuple[str, ...]  # runs without an ASR: not on the chart


# ---------------------------------------------------------------------------------------------------
# Measures of one run


def _pooled(run: RunData, judge: str, metric: str) -> tuple[Point, list[str]] | None:
    """A judge's rate pooled over every subset that has it (group "all"), Wilson interval."""
    rows = [
        r for r in run.metrics if r.judge == judge and r.metric == metric and r.group == "all" and r.n > 0
    ]
    if not rows:
        return None
    successes = sum(round(r.value * r.n) for r in rows)
    n = sum(r.n for r in rows)
    ci = wilson_ci(successes, n)
    items: dict[str, float] | None = None
    judgments = run.judgments.get(judge)
    if judgments and run.samples:
        items = {}
        for row in rows:
            items.update(
                metric_values(list(run.samples.values()), judgments, metric=metric, subset=row.subset)
            )
        if len(items) != n:  # the judgments do not reproduce the file's counts: do not pair on them
            items = None
    point = Point(successes / n, ci[0] if ci else None, ci[1] if ci else None, n, items)
    return point, sorted(r.subset for r in rows)


def _utility_items(run: RunData, score: UtilityScore) -> dict[str, float] | None:
    """The engine's per-document scores behind ``score``, keyed by (leaf task, document); None unless
    they average exactly to the score (then pairing on them is sound)."""
    if run.utility_path is None:
        return None
    path = run.utility_path / "samples" / f"{task_file_name(score.task)}.jsonl"
    if not path.is_file():
        return None
    items: dict[str, float] = {}
    try:
        for line in path.read_text(encoding="utf-8").splitlines():
            sample = parse_json(line)
            if sample.get("filter", "none") != score.filter and "filter" in sample:
                continue
            value = sample.get(score.metric)
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            items[f"{sample.get('task')}/{sample.get('doc_id')}"] = float(value)
    except (OSError, ValueError) as err:
        logger.warning("cannot read %s (%s): no paired interval for %s", path, err, score.task)
        return None
    if len(items) != score.n or not math.isclose(sum(items.values()) / len(items), score.value, abs_tol=1e-9):
        return None
    return items


def _utility_measure(score: UtilityScore) -> Measure:
    label = score.task if score.filter in ("none", "") else f"{score.task} ({score.filter})"
    return Measure(
        key=f"utility:{score.task}:{score.metric}:{score.filter}",
        label=f"{label} ({score.metric})",
        kind=HELPFULNESS,
        unit=score.unit,
        higher_is_better=score.higher_is_better,
    )


def collect(runs: Sequence[RunData], judge: str | None) -> tuple[list[Measure], dict[str, dict[str, Point]]]:
    """Every measure that at least one run has, and each run's points."""
    measures: dict[str, Measure] = {}
    points: dict[str, dict[str, Point]] = {run.label: {} for run in runs}
    pairwise = next(
        (r.judge for run in runs for r in run.metrics if r.metric == "helpfulness_win_rate"), None
    )
    sources = []
    if judge is not None:
        sources += [(HARM, judge, "attack_success_rate"), (OVER_REFUSAL, judge, "over_refusal_rate")]
    if pairwise is not None:
        sources.append((HELPFULNESS, pairwise, "helpfulness_win_rate"))
    for kind, source_judge, metric in sources:
        name = metric_info(metric).short
        subsets: set[str] = set()
        for run in runs:
            pooled = _pooled(run, source_judge, metric)
            if pooled is not None:
                points[run.label][kind if kind != HELPFULNESS else "win_rate"] = pooled[0]
                subsets.update(pooled[1])
        if subsets:
            key = kind if kind != HELPFULNESS else "win_rate"
            measures[key] = Measure(
                key=key,
                label=f"{name} ({' + '.join(sorted(subsets))}, {source_judge} judge)",
                kind=kind,
                unit="fraction",
                higher_is_better=kind == HELPFULNESS,
            )
    for run in runs:
        for score in run.utility:
            if score.group != "all" or not score.primary:
                continue
            measure = _utility_measure(score)
            measures.setdefault(measure.key, measure)
            points[run.label][measure.key] = Point(
                score.value, score.ci_low, score.ci_high, score.n, _utility_items(run, score)
            )
    order = {HARM: 0, OVER_REFUSAL: 1, HELPFULNESS: 2}
    ordered = sorted(measures.values(), key=lambda m: (order[m.kind], m.key != "win_rate", m.key))
    return ordered, points


# ---------------------------------------------------------------------------------------------------
# Changes and verdicts


def difference_interval(base: Point, other: Point) -> tuple[float | None, float | None, str]:
    """The 95 % interval of ``other - base`` and the method that made it."""
    if base.items and other.items:
        ci = bootstrap_difference_ci(base.items, other.items, seed=0, n=N_BOOTSTRAP)
        # A zero-width bootstrap interval (every pair agrees, e.g. 0 of n refused in both runs) claims a
        # certainty the data do not have: fall back to the runs' own (Wilson) intervals then.
        if ci is not None and ci[1] > ci[0]:
            paired = bool(set(base.items) & set(other.items))
            return ci[0], ci[1], "paired bootstrap" if paired else "unpaired bootstrap"
    if None in (base.low, base.high, other.low, other.high):
        return None, None, "none"
    assert base.low is not None and base.high is not None and other.low is not None and other.high is not None
    # MOVER (method of variance estimates recovery): Newcombe's hybrid score interval for Wilson inputs.
    delta = other.value - base.value
    low = delta - math.hypot(other.value - other.low, base.high - base.value)
    high = delta + math.hypot(other.high - other.value, base.value - base.low)
    return low, high, "MOVER from the runs' intervals"


def _verdict(
    run: str, measure: Measure, delta: float, low: float | None, high: float | None, method: str
) -> Cost:
    if low is None or high is None:
        text = f"no interval for {measure.label}: no verdict"
        return Cost(run, measure, delta, None, None, "none", "unknown", text)
    # + 0.0 turns -0.0 into 0.0 for printing.
    change_low, change_high = (x + 0.0 for x in sorted((measure.points(low), measure.points(high))))
    interval = f"95% CI of the change {change_low:+.1f} to {change_high:+.1f} points"
    # A cost is a fall in a helpfulness measure or a rise in over-refusal, in points.
    sign = -1.0 if measure.higher_is_better else 1.0
    cost = sign * measure.points(delta)
    cost_low, cost_high = sorted((sign * change_low, sign * change_high))
    half = (change_high - change_low) / 2
    if cost_low > 0:
        verdict = "cost"
    elif cost_high < 0:
        verdict = "gain"
    else:
        verdict = "none"
    if measure.kind == OVER_REFUSAL:
        text = {
            "cost": f"over-refusal up {cost:.1f} ± {half:.1f} points",
            "gain": f"over-refusal down {-cost:.1f} ± {half:.1f} points",
            "none": f"no measurable change in over-refusal ({interval})",
        }[verdict]
    else:
        text = {
            "cost": f"costs {cost:.1f} ± {half:.1f} points on {measure.label}",
            "gain": f"gains {-cost:.1f} ± {half:.1f} points on {measure.label}",
            "none": f"no measurable cost on {measure.label} ({interval}: a cost above {cost_high + 0.0:.1f} points "
            "is ruled out)",
        }[verdict]
    return Cost(run, measure, delta, low, high, method, verdict, text)


def costs(
    runs: Sequence[RunData], measures: Sequence[Measure], points: Mapping[str, Mapping[str, Point]]
) -> list[Cost]:
    """Each later run's change to the baseline on every helpfulness measure and on over-refusal."""
    out: list[Cost] = []
    base = points[runs[0].label]
    for run in runs[1:]:
        for measure in measures:
            if measure.kind == HARM or measure.key not in base or measure.key not in points[run.label]:
                continue
            before, after = base[measure.key], points[run.label][measure.key]
            low, high, method = difference_interval(before, after)
            out.append(_verdict(run.label, measure, after.value - before.value, low, high, method))
    return out


def run_verdict(run_costs: Sequence[Cost]) -> str:
    """One line over a run's costs: the measured costs, or "no measurable cost" when there is none."""
    measured = [c.text for c in run_costs if c.verdict == "cost"]
    unknown = sum(c.verdict == "unknown" for c in run_costs)
    if measured:
        return "; ".join(measured)
    if not run_costs or unknown == len(run_costs):
        return "no verdict: no change with an interval"
    tail = f" ({unknown} measure(s) without an interval)" if unknown else ""
    return "no measurable cost" + tail


# ---------------------------------------------------------------------------------------------------
# The chart

_COLOURS = ("#8c8c8c", "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00")


def _err(point: Point, scale: float) -> tuple[list[float], list[float]]:
    low = point.low if point.low is not None else point.value
    high = point.high if point.high is not None else point.value
    return [max(0.0, scale * (point.value - low))], [max(0.0, scale * (high - point.value))]


def tradeoff_chart(
    runs: Sequence[RunData], measures: Sequence[Measure], points: Mapping[str, Mapping[str, Point]]
) -> Chart | None:
    """Harmfulness against each helpfulness measure (one point per run, 95 % bars on both axes), and
    over-refusal per run beside it. None when no run has both an ASR and a helpfulness measure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    harm = next((m for m in measures if m.kind == HARM), None)
    helpful = [m for m in measures if m.kind == HELPFULNESS]
    over = next((m for m in measures if m.kind == OVER_REFUSAL), None)
    placed = [run for run in runs if harm is not None and harm.key in points[run.label]]
    if harm is None or not helpful or not any(m.key in points[r.label] for r in placed for m in helpful):
        return None
    panels = len(helpful) + (1 if over is not None else 0)
    columns = min(3, panels)
    rows = math.ceil(panels / columns)
    figure = Figure(figsize=(3.6 * columns, 3.1 * rows), dpi=100)
    FigureCanvasAgg(figure)
    described: list[str] = []
    for index, measure in enumerate(helpful):
        axes = figure.add_subplot(rows, columns, index + 1)
        scale = 100.0 if measure.unit == "fraction" else 1.0
        for colour_index, run in enumerate(runs):
            x, y = points[run.label].get(harm.key), points[run.label].get(measure.key)
            if x is None or y is None:
                continue
            colour = _COLOURS[colour_index % len(_COLOURS)]
            axes.errorbar(
                [100 * x.value], [scale * y.value], xerr=_err(x, 100.0), yerr=_err(y, scale),
                fmt="o", color=colour, ecolor=colour, elinewidth=1, capsize=3, label=run.label,
            )  # fmt: skip
            axes.annotate(
                run.label,
                (100 * x.value, scale * y.value),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=8,
            )
            described.append(
                f"{run.label}: ASR {100 * x.value:.1f}%, {measure.label} {measure.show(y.value)}"
            )
        axes.set_xlabel("ASR % (lower is safer)", fontsize=9)
        axes.set_ylabel(measure.label + (" %" if measure.unit == "fraction" else ""), fontsize=9)
        axes.set_title(f"harmfulness vs {measure.label}", fontsize=9)
        axes.grid(alpha=0.3)
        axes.spines[["top", "right"]].set_visible(False)
        axes.tick_params(labelsize=8)
    if over is not None:
        axes = figure.add_subplot(rows, columns, len(helpful) + 1)
        labels, values, lows, highs, colours = [], [], [], [], []
        for colour_index, run in enumerate(runs):
            point = points[run.label].get(over.key)
            if point is None:
                continue
            low, high = _err(point, 100.0)
            labels.append(run.label)
            values.append(100 * point.value)
            lows += low
            highs += high
            colours.append(_COLOURS[colour_index % len(_COLOURS)])
            described.append(f"{run.label}: over-refusal {100 * point.value:.1f}%")
        axes.bar(range(len(values)), values, color=colours, yerr=[lows, highs], capsize=3)
        axes.set_xticks(range(len(labels)))
        axes.set_xticklabels(labels, rotation=20 if len(labels) > 3 else 0, fontsize=8)
        axes.set_ylabel("over-refusal % (lower is better)", fontsize=9)
        axes.set_title("over-refusal", fontsize=9)
        axes.grid(axis="y", alpha=0.3)
        axes.spines[["top", "right"]].set_visible(False)
        axes.tick_params(labelsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    title = "Safety vs capability: one point per run, 95% interval bars; over-refusal beside it"
    return Chart(slug="tradeoff", title=title, alt=f"{title}. " + "; ".join(described), png=buffer.getvalue())


def build_tradeoff(runs: Sequence[RunData], judge: str | None, with_chart: bool = True) -> Tradeoff | None:
    """The trade-off section, or None when the runs have no helpfulness measure and no over-refusal to compare."""
    measures, points = collect(runs, judge)
    if not any(m.kind == HELPFULNESS for m in measures) and not any(run.utility for run in runs):
        return None
    all_costs = costs(runs, measures, points)
    verdicts = {run.label: run_verdict([c for c in all_costs if c.run == run.label]) for run in runs[1:]}
    harm = next((m for m in measures if m.kind == HARM), None)
    unplaced = tuple(run.label for run in runs if harm is None or harm.key not in points[run.label])
    chart = tradeoff_chart(runs, measures, points) if with_chart else None
    return Tradeoff(tuple(measures), points, tuple(all_costs), verdicts, chart, unplaced)


def utility_settings(run: RunData) -> list[dict[str, Any]]:
    """A run's capability tasks as the engine ran them: task, metric, engine and task version, few-shot, limit, n."""
    return [
        {
            "task": s.task,
            "metric": s.metric if s.filter in ("none", "") else f"{s.metric} ({s.filter})",
            "engine": f"{s.engine} {s.engine_version or ''}".strip(),
            "task version": s.task_version,
            "few-shot": s.num_fewshot,
            "limit": s.limit,
            "n": s.n,
            "failed": s.n_errors,
        }
        for s in run.utility
        if s.group == "all" and s.primary
    ]


def utility_warnings(runs: Sequence[RunData]) -> list[str]:
    """Reasons capability scores may not be like for like: other task settings or engine versions, or a
    capability folder whose model differs from the run's safety results."""
    warnings: list[str] = []
    for run in runs:
        fields = run.utility_manifest.get("result_fields") or {}
        for key in ("model", "adapter"):
            if run.run_info and key in fields and key in run.run_info and fields[key] != run.run_info[key]:
                warnings.append(
                    f"{run.label}: the capability results are of {key} {fields[key]!r} but the safety results "
                    f"of {run.run_info[key]!r}."
                )
    if len(runs) < 2:
        return warnings
    base = {s.key: s for s in runs[0].utility if s.group == "all" and s.primary}
    for run in runs[1:]:
        for score in run.utility:
            other = base.get(score.key)
            if other is None:
                continue
            for attribute in ("limit", "num_fewshot", "task_version", "engine_version"):
                a, b = getattr(other, attribute), getattr(score, attribute)
                if a != b:
                    warnings.append(
                        f"{score.task}: {attribute.replace('_', ' ')} is {a!r} in {runs[0].label} but {b!r} in "
                        f"{run.label}: the scores may not be comparable."
                    )
    return warnings


def tradeoff_records(tradeoff: Tradeoff | None) -> dict[str, Any]:
    """The section as plain data (for report.json)."""
    if tradeoff is None:
        return {"measures": [], "points": [], "costs": [], "verdicts": {}}
    return {
        "measures": [m.__dict__ for m in tradeoff.measures],
        "points": [
            {"run": run, "measure": key, "value": p.value, "ci_low": p.low, "ci_high": p.high, "n": p.n}
            for run, by_key in tradeoff.points.items()
            for key, p in by_key.items()
        ],
        "costs": [
            {
                "run": c.run,
                "measure": c.measure.key,
                "delta": c.delta,
                "ci_low": c.low,
                "ci_high": c.high,
                "method": c.method,
                "verdict": c.verdict,
                "text": c.text,
            }
            for c in tradeoff.costs
        ],
        "verdicts": dict(tradeoff.verdicts),
        "ci_level": CI_LEVEL,
    }
