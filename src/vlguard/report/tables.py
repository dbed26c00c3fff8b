"""The report's tables, computed once from loaded runs and rendered by html, markdown and export.

Rows line up the same number across runs (same judge, subset, metric, group and group value); the
first run is the baseline ("before") and every delta is ``run - baseline``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vlguard.metric_registry import metric_info, metric_rank
from vlguard.metrics import CI_METHOD_BEFORE_RECORDING
from vlguard.records import SUBSETS
from vlguard.report.loading import MetricRow, RunData

# Run settings shown in the runs table, in this order, with the metrics.json "run" key they come from.
SETTING_LABELS = {
    "model": "Model",
    "revision": "Revision",
    "adapter": "Adapter",
    "benchmark": "Benchmark",
    "image_mode": "Image mode",
    "max_new_tokens": "Max new tokens",
    "seed": "Seed",
    "n_samples": "Samples",
}
# Settings that must match for a comparison to be like for like.
_COMPARABLE_SETTINGS = ("benchmark", "image_mode", "max_new_tokens", "n_samples")


def is_headline(subset: str, metric: str) -> bool:
    """Whether a benchmark leads with ``metric`` on ``subset`` (its registry entry's ``headline``):
    the report shows those rows first and charts them."""
    from vlguard.benchmarks import headline_metrics

    return (subset, metric) in headline_metrics()


def headline_rank(subset: str, metric: str) -> int:
    """Where a headline (subset, metric) goes in a headline chart: in benchmark registry order."""
    from vlguard.benchmarks import headline_metrics

    pairs = headline_metrics()
    return pairs.index((subset, metric)) if (subset, metric) in pairs else len(pairs)


def subset_label(subset: str) -> str:
    """Human name of a subset (its benchmark entry's label; the subset's own name otherwise)."""
    from vlguard.benchmarks import subset_info

    info = subset_info(subset)
    return info.label if info is not None and info.label else subset


def subset_short_label(subset: str) -> str:
    """Short name of a subset for a chart's axis (its entry's ``short``, else its label)."""
    from vlguard.benchmarks import subset_info

    info = subset_info(subset)
    return info.short if info is not None and info.short else subset_label(subset)


def _sort_key(row: MetricRow, judge_order: dict[str, int]) -> tuple[Any, ...]:
    subset_rank = SUBSETS.index(row.subset) if row.subset in SUBSETS else len(SUBSETS)
    return (
        judge_order.get(row.judge, 99),
        subset_rank,
        row.subset,
        metric_rank(row.metric),
        row.metric,
        row.group_value or "",
    )


@dataclass(frozen=True)
class ComparisonRow:
    """The same number in every run (``None`` where a run lacks it), in run order."""

    judge: str
    subset: str
    metric: str
    group: str
    group_value: str | None
    cells: tuple[MetricRow | None, ...]

    def delta(self, index: int) -> float | None:
        """``run[index] - baseline`` or None when either is missing."""
        base, other = self.cells[0], self.cells[index]
        if base is None or other is None:
            return None
        return other.value - base.value

    def improved(self, index: int) -> bool | None:
        """Whether run ``index`` is better than the baseline on this metric (None: no change or unknown)."""
        delta = self.delta(index)
        if delta is None or delta == 0:
            return None
        return (delta > 0) == metric_info(self.metric).higher_is_better

    def change_word(self, index: int) -> str:
        """``"better"`` or ``"worse"`` for run ``index`` against the baseline; ``""`` for no change or unknown."""
        improved = self.improved(index)
        return "" if improved is None else ("better" if improved else "worse")

    @property
    def axis(self) -> str | None:
        """What the number measures (its judge's axis, from the first run that records one)."""
        return next((cell.axis for cell in self.cells if cell is not None and cell.axis), None)

    @property
    def stand_in(self) -> bool:
        """Whether any run's number stands in for a reference on another safety axis."""
        return any(cell is not None and cell.stand_in for cell in self.cells)

    @property
    def reference_axis(self) -> str | None:
        """The axis the benchmark's reference scores this subset on (None when unknown)."""
        return next(
            (cell.reference_axis for cell in self.cells if cell is not None and cell.reference_axis), None
        )

    def axis_note(self) -> str:
        """``refusal``, or ``refusal; stand-in for harm``: what the row measures, for every report format."""
        if self.axis is None:
            return ""
        if self.stand_in:
            return f"{self.axis}; stand-in for {self.reference_axis or 'another axis'}"
        return self.axis

    @property
    def judge_versions(self) -> tuple[str | None, ...]:
        """The judge version of each run's cell (None where the run has no such row)."""
        return tuple(cell.judge_version if cell else None for cell in self.cells)


def pct(value: float | None) -> str:
    """A rate as a percentage with one decimal (``–`` when there is none), as every report format shows it."""
    return "–" if value is None else f"{100 * value:.1f}%"


def comparison_rows(runs: Sequence[RunData], group: str = "all") -> list[ComparisonRow]:
    """Rows of one ``group`` (``all``, ``category``, ``subcategory``), aligned across runs and sorted."""
    judge_order: dict[str, int] = {}
    for run in runs:
        for judge in run.judges:
            judge_order.setdefault(judge, len(judge_order))
    by_key: dict[tuple[str, str, str, str, str | None], list[MetricRow | None]] = {}
    first: dict[tuple[str, str, str, str, str | None], MetricRow] = {}
    for index, run in enumerate(runs):
        for row in run.metrics:
            if row.group != group:
                continue
            cells = by_key.setdefault(row.key, [None] * len(runs))
            cells[index] = row
            first.setdefault(row.key, row)
    keys = sorted(by_key, key=lambda k: _sort_key(first[k], judge_order))
    return [
        ComparisonRow(
            judge=k[0], subset=k[1], metric=k[2], group=k[3], group_value=k[4], cells=tuple(by_key[k])
        )
        for k in keys
    ]


def summary_rows(runs: Sequence[RunData]) -> list[ComparisonRow]:
    """The summary table: every whole-subset number, headline metrics (ASR, over-refusal, helpfulness) first."""
    rows = comparison_rows(runs, "all")
    headline = [r for r in rows if is_headline(r.subset, r.metric)]
    return headline + [r for r in rows if not is_headline(r.subset, r.metric)]


def primary_judge(runs: Sequence[RunData]) -> str | None:
    """The judge whose labels the examples show: ``refusal`` when present, else the first one."""
    judges = [j for run in runs for j in run.judges]
    if "refusal" in judges:
        return "refusal"
    return judges[0] if judges else None


# Result-changing settings of the manifest (``result_fields``) shown besides metrics.json's "run" block.
_RESULT_FIELD_LABELS = {
    "preset": "Preset",
    "backend": "Backend",
    "dtype": "Dtype",
    "system_prompt": "System prompt",
    "allow_blank_substitutes": "Blank substitutes",
}
_SHOWN_PACKAGES = ("vlguard", "torch", "transformers", "peft")


def _benchmark_source(manifest: dict[str, Any]) -> str | None:
    source = manifest.get("benchmark_source")
    if not isinstance(source, dict):
        return None
    where = source.get("path") or source.get("repo_id")
    if where is None:
        return None
    text = f"{source.get('kind', '')} {where}".strip()
    if source.get("revision") or source.get("commit"):
        text += f" @ {source.get('commit') or source.get('revision')}"
    hashes = source.get("sha256")
    if isinstance(hashes, dict) and hashes:
        text += " (" + ", ".join(f"{name} sha256 {str(digest)[:12]}" for name, digest in hashes.items()) + ")"
    return text


def run_settings(run: RunData) -> dict[str, str]:
    """What produced a run's numbers, as display strings: model, revision, adapter, settings, judges,
    data source, versions (from metrics.json's ``run`` block and the run's manifest)."""
    info, manifest = run.run_info, run.manifest
    settings: dict[str, str] = {}
    for key, label in SETTING_LABELS.items():
        value = info.get(key, manifest.get(key))
        settings[label] = "none" if value is None else str(value)
    if not run.complete:
        settings[SETTING_LABELS["n_samples"]] += f" (INCOMPLETE: {_coverage(run.completeness)})"
    if _partial(run):
        settings["Partial benchmark"] = "; ".join(_partial(run))
    for key, value in info.items():
        if key not in SETTING_LABELS and isinstance(value, str | int | float | bool):
            settings[key.replace("_", " ").capitalize()] = str(value)
    fields = manifest.get("result_fields")
    if isinstance(fields, dict):
        for key, label in _RESULT_FIELD_LABELS.items():
            if key in fields and label not in settings:
                settings[label] = "none" if fields[key] is None else str(fields[key])
    settings["Judges"] = ", ".join(
        f"{judge} ({version})" if version else judge for judge, version in run.judge_versions().items()
    )
    source = _benchmark_source(manifest)
    if source:
        settings["Data source"] = source
    packages = manifest.get("packages")
    if isinstance(packages, dict):
        shown = [f"{name} {packages[name]}" for name in _SHOWN_PACKAGES if packages.get(name)]
        if shown:
            settings["Versions"] = ", ".join(shown)
    for key, label in (("git_commit", "Git commit"), ("created", "Created")):
        value = manifest.get(key)
        if isinstance(value, str):
            settings[label] = value
    settings["Folder"] = str(run.path)
    return settings


def _coverage(counts: dict[str, Any]) -> str:
    total = counts.get("samples")
    parts = [f"{counts.get('generated')} of {total} generated"]
    judged = counts.get("judged") or {}
    parts += [f"{n} of {total} judged by {judge}" for judge, n in judged.items()]
    failed = counts.get("failed") or {}
    parts += [
        f"{n} failed ({'generations' if name == 'generation' else 'verdicts of ' + name})"
        for name, n in failed.items()
        if n
    ]
    return ", ".join(parts) if judged else parts[0] + ", none judged"


def incompleteness_notes(runs: Sequence[RunData]) -> list[str]:
    """One line per run that was not finished: its metrics cover only some of its samples."""
    return [
        f"{run.label} is INCOMPLETE: {_coverage(run.completeness)}. Its numbers describe only those "
        "samples, not the benchmark; finish the run (rerun its `vlguard eval` command) before comparing."
        for run in runs
        if not run.complete
    ]


def _partial(run: RunData) -> list[str]:
    """What a run loaded with ``allow_partial`` lacked: one line per short file (metrics.json ``run.partial``)."""
    counts = run.run_info.get("partial")
    if not isinstance(counts, list):
        return []
    return [
        f"{c.get('file')} has {c.get('found')} {c.get('what')}, the published {c.get('part')} has {c.get('expected')}"
        for c in counts
        if isinstance(c, dict)
    ]


def partial_notes(runs: Sequence[RunData]) -> list[str]:
    """One line per run evaluated on a benchmark file shorter (or longer) than published (``allow_partial``)."""
    return [
        f"{run.label} ran on PART of its benchmark (allow_partial): {'; '.join(_partial(run))}. Its numbers are "
        "not the benchmark's."
        for run in runs
        if _partial(run)
    ]


def comparability_warnings(runs: Sequence[RunData]) -> list[str]:
    """Reasons a comparison may not be like for like: other benchmark or settings, other judge versions."""
    if len(runs) < 2:
        return []
    warnings: list[str] = []
    base = runs[0]
    for run in runs[1:]:
        for key in _COMPARABLE_SETTINGS:
            a, b = base.run_info.get(key), run.run_info.get(key)
            if a != b:
                warnings.append(
                    f"{SETTING_LABELS[key]} differs: {base.label} has {a!r}, {run.label} has {b!r}."
                )
        base_versions, versions = base.judge_versions(), run.judge_versions()
        for judge, version in versions.items():
            if judge in base_versions and base_versions[judge] != version:
                warnings.append(
                    f"Judge {judge} has version {base_versions[judge]!r} in {base.label} "
                    f"but {version!r} in {run.label}: its numbers may not be comparable."
                )
        if base.samples and run.samples and set(base.samples) != set(run.samples):
            warnings.append(f"{base.label} and {run.label} were evaluated on different samples.")
    return warnings


def groups_present(runs: Sequence[RunData]) -> list[str]:
    """Group kinds in the runs: ``all``, ``category``, ``subcategory`` first, then any others."""
    found = {row.group for run in runs for row in run.metrics}
    documented = [g for g in ("all", "category", "subcategory") if g in found]
    return documented + sorted(found - set(documented))


def metric_records(runs: Sequence[RunData]) -> list[dict[str, Any]]:
    """Every metric row of every run as a flat dict (long format) with its delta to the baseline."""
    records: list[dict[str, Any]] = []
    for group in groups_present(runs):
        for row in comparison_rows(runs, group):
            for index, cell in enumerate(row.cells):
                if cell is not None:
                    delta = None if index == 0 else row.delta(index)
                    records.append({**_row_dict(cell), "delta_vs_baseline": delta})
    return records


def _row_dict(cell: MetricRow) -> dict[str, Any]:
    return {
        "run": cell.run,
        "judge": cell.judge,
        "judge_version": cell.judge_version,
        "subset": cell.subset,
        "group": cell.group,
        "group_value": cell.group_value,
        "metric": cell.metric,
        "value": cell.value,
        "ci_low": cell.ci_low,
        "ci_high": cell.ci_high,
        # metrics.json files written before rows recorded their method all used the bootstrap
        "ci_method": cell.ci_method or CI_METHOD_BEFORE_RECORDING,
        "n": cell.n,
        "n_errors": cell.n_errors,
        "axis": cell.axis,
        "reference_axis": cell.reference_axis,
        "stand_in": cell.stand_in,
    }


def agreement_records(runs: Sequence[RunData]) -> list[dict[str, Any]]:
    """Judge agreement rows of every run as flat dicts."""
    return [
        {
            "run": row.run,
            "judges": " vs ".join(row.judges),
            "subset": row.subset,
            "view": row.view,
            "kappa": row.kappa,
            "agreement": row.agreement,
            "n": row.n,
        }
        for run in runs
        for row in run.agreement
    ]
