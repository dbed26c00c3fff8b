"""Read evaluation run folders (``manifest.json``, ``samples.jsonl``, ``generations.jsonl``,
``judgments/<judge>.jsonl``, ``metrics.json``; see docs/design.md) into one frozen ``RunData`` per run.

The report only reads: it never writes into a run folder. ``metrics.json`` is required (it holds every
number the report shows); the other files are optional and only feed the examples section, so a run
whose generations were deleted still gets a summary.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlguard.errors import DataValidationError, Problem, VLGuardError
from vlguard.fileio import JsonError, parse_json
from vlguard.metric_registry import METRICS
from vlguard.records import Generation, Judgment, Sample
from vlguard.runs import RunFolder

logger = logging.getLogger(__name__)

SUPPORTED_SCHEMA = 1
_ROW_FIELDS: dict[str, tuple[type, ...]] = {
    "judge": (str,),
    "subset": (str,),
    "group": (str,),
    "metric": (str,),
    "value": (int, float),
    "n": (int,),
}


class RunFolderError(VLGuardError):
    """A run folder cannot be reported on: missing folder or ``metrics.json``, or an unreadable file."""


@dataclass(frozen=True)
class MetricRow:
    """One row of ``metrics.json``'s ``metrics`` list, tagged with the label of the run it came from."""

    run: str
    judge: str
    judge_version: str | None
    subset: str
    group: str
    group_value: str | None
    metric: str
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int
    n_errors: int
    # How ci_low/ci_high were made ("wilson", "bootstrap-percentile"); None in a metrics.json written
    # before rows recorded it (every CI was a percentile bootstrap then).
    ci_method: str | None = None
    # What the number measures (its judge's axis) and what the benchmark's reference scores on; a
    # stand-in measures another safety axis than the reference (vlguard.metric_registry). None / False
    # in a metrics.json written before rows recorded them.
    axis: str | None = None
    reference_axis: str | None = None
    stand_in: bool = False

    @property
    def key(self) -> tuple[str, str, str, str, str | None]:
        """What identifies the same number across runs: judge, subset, metric, group, group value."""
        return (self.judge, self.subset, self.metric, self.group, self.group_value)


@dataclass(frozen=True)
class AgreementRow:
    """Cohen's kappa (and raw agreement) of two judges on the same generations of one run."""

    run: str
    judges: tuple[str, ...]
    kappa: float | None  # None: undefined (e.g. both judges gave one and the same label throughout)
    agreement: float | None
    n: int
    subset: str = "all"  # "all" or one subset
    view: str | None = None  # the label view compared, e.g. "attack_success"


@dataclass(frozen=True)
class UtilityScore:
    """One capability score of a run: a row of ``RUN/utility/metrics.json`` (written by ``vlguard utility``)."""

    run: str
    engine: str
    engine_version: str | None
    task: str
    group: str  # "all" (the task) or "subtask" (a subtask of a group such as mmlu)
    group_value: str | None
    metric: str
    filter: str
    value: float
    ci_low: float | None
    ci_high: float | None
    stderr: float | None
    n: int
    n_errors: int
    higher_is_better: bool
    unit: str  # "fraction" (a rate, shown as %) or "points" (the score's own scale)
    primary: bool  # the task's headline score (its first metric)
    num_fewshot: int | None = None
    limit: int | None = None
    task_version: str | None = None

    @property
    def key(self) -> tuple[str, str, str, str, str | None]:
        """What identifies the same score across runs: task, metric, filter, group, group value."""
        return (self.task, self.metric, self.filter, self.group, self.group_value)

    @property
    def name(self) -> str:
        """``task`` or ``task (metric, filter)`` when the metric is not the task's headline one."""
        detail = self.metric if self.filter in ("none", "") else f"{self.metric}, {self.filter}"
        return self.task if self.primary else f"{self.task} ({detail})"


@dataclass(frozen=True)
class RunData:
    """Everything the report needs from one run folder."""

    label: str
    path: Path
    manifest: dict[str, Any]
    run_info: dict[str, Any]  # metrics.json's "run" block: model, revision, adapter, settings
    metrics: tuple[MetricRow, ...]
    agreement: tuple[AgreementRow, ...]
    samples: dict[str, Sample] = field(default_factory=dict)
    generations: dict[str, Generation] = field(default_factory=dict)
    # judge name -> sample id -> judgment
    judgments: dict[str, dict[str, Judgment]] = field(default_factory=dict)
    # Capability results (``vlguard utility``): the scores, their folder (sample logs) and manifest.
    utility: tuple[UtilityScore, ...] = ()
    utility_path: Path | None = None
    utility_manifest: dict[str, Any] = field(default_factory=dict)
    # {"samples", "generated", "judged": {judge: n}, "failed": {...}}: how much of the run the metrics cover
    completeness: dict[str, Any] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Whether every sample was generated and judged by every judge (see ``completeness``)."""
        counts = self.completeness
        if not counts:
            return True  # nothing known either way (an old metrics.json without its run files)
        total = counts.get("samples")
        judged = counts.get("judged") or {}
        # a run whose every generation failed, or one of whose judges failed on every sample, measured nothing
        failed = counts.get("failed") or {}
        measured = not (0 < (counts.get("generated") or 0) <= failed.get("generation", 0)) and not any(
            0 < n <= failed.get(judge, 0) for judge, n in judged.items()
        )
        return bool(
            counts.get("generated") == total
            and judged
            and all(n == total for n in judged.values())
            and measured
        )

    @property
    def judges(self) -> list[str]:
        """Judge names in the order they first appear in metrics.json."""
        return list(dict.fromkeys(row.judge for row in self.metrics))

    def judge_versions(self) -> dict[str, str | None]:
        """Judge name -> version, as recorded in metrics.json."""
        versions: dict[str, str | None] = {}
        for row in self.metrics:
            versions.setdefault(row.judge, row.judge_version)
        return versions


def _read_json(path: Path) -> Any:
    try:
        return parse_json(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise RunFolderError(f"{path}: not UTF-8 text") from err
    except JsonError as err:
        raise RunFolderError(f"{path}: not valid JSON ({err.where()}: {err.message})") from err


def _optional_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return None if math.isnan(number) else number


def is_rate(metric: str) -> bool:
    """Whether a metric is a share of samples (ASR, over-refusal, win rate, accuracy ...), so within [0, 1].

    Registered metrics say so by their unit; a metric not registered (a newer metrics.json) by its name.
    """
    if metric in METRICS:
        return METRICS[metric].unit == "share"
    return metric.endswith(("_rate", "accuracy"))


def _range_problems(raw: dict[str, Any], file: str, where: str) -> list[Problem]:
    """Values no computation of vlguard produces: NaN / infinite numbers, rates outside [0, 1], negative counts."""
    problems: list[Problem] = []
    bounded = is_rate(raw["metric"])
    for name in ("value", "ci_low", "ci_high"):
        value = raw.get(name)
        if value is None and name != "value":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(Problem(file, where, name, f"expected a number, got {value!r}"))
        elif not math.isfinite(value):
            problems.append(Problem(file, where, name, f"not a finite number ({value!r})"))
        elif bounded and not 0.0 <= value <= 1.0:
            problems.append(
                Problem(file, where, name, f"{value!r} is outside [0, 1] for the rate {raw['metric']!r}")
            )
    for name in ("n", "n_errors"):
        value = raw.get(name, 0) if name == "n_errors" else raw.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            problems.append(Problem(file, where, name, f"expected a count (integer >= 0), got {value!r}"))
    return problems


def _agreement_problems(raw: dict[str, Any], file: str, where: str) -> list[Problem]:
    problems: list[Problem] = []
    for name, low in (("kappa", -1.0), ("agreement", 0.0)):
        value = raw.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            problems.append(Problem(file, where, name, f"expected a finite number or null, got {value!r}"))
        elif not low <= value <= 1.0:
            problems.append(Problem(file, where, name, f"{value!r} is outside [{low:g}, 1]"))
    n = raw.get("n", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        problems.append(Problem(file, where, "n", f"expected a count (integer >= 0), got {n!r}"))
    return problems


def _completeness_problems(data: dict[str, Any], file: str) -> list[Problem]:
    counts = data.get("completeness")
    if counts is None:
        return []
    if not isinstance(counts, dict):
        return [Problem(file, "", "completeness", "expected an object")]
    problems = []
    for name in ("samples", "generated"):
        value = counts.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(Problem(file, "", f"completeness.{name}", f"expected a count, got {value!r}"))
    judged = counts.get("judged")
    if not isinstance(judged, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in judged.values()
    ):
        problems.append(Problem(file, "", "completeness.judged", "expected an object of counts per judge"))
    if "complete" in data and not isinstance(data["complete"], bool):
        problems.append(Problem(file, "", "complete", f"expected true or false, got {data['complete']!r}"))
    return problems


def parse_metrics(
    data: Any, path: Path, label: str
) -> tuple[dict[str, Any], list[MetricRow], list[AgreementRow]]:
    """Validate a metrics.json object (schema 1) and turn it into rows; every problem is listed."""
    file = str(path)
    if not isinstance(data, dict):
        raise DataValidationError([Problem(file, "", "", "expected a JSON object")])
    problems: list[Problem] = []
    schema = data.get("schema")
    if schema != SUPPORTED_SCHEMA:
        problems.append(
            Problem(file, "", "schema", f"unsupported schema {schema!r} (expected {SUPPORTED_SCHEMA})")
        )
    run_info = data.get("run", {})
    if not isinstance(run_info, dict):
        problems.append(Problem(file, "", "run", "expected an object"))
        run_info = {}
    raw_rows = data.get("metrics")
    if not isinstance(raw_rows, list):
        problems.append(Problem(file, "", "metrics", "expected a list of metric rows"))
        raw_rows = []
    rows: list[MetricRow] = []
    for index, raw in enumerate(raw_rows):
        where = f"metrics[{index}]"
        if not isinstance(raw, dict):
            problems.append(Problem(file, where, "", "expected an object"))
            continue
        if raw.get("value") is None and raw.get("n") == 0:
            continue  # no judged sample in this cell (e.g. every verdict an error): no number to show
        bad = [
            name
            for name, types in _ROW_FIELDS.items()
            if not isinstance(raw.get(name), types) or isinstance(raw.get(name), bool)
        ]
        for name in bad:
            problems.append(Problem(file, where, name, f"missing or wrong type ({raw.get(name)!r})"))
        if bad:
            continue
        out_of_range = _range_problems(raw, file, where)
        if out_of_range:
            problems += out_of_range
            continue
        rows.append(
            MetricRow(
                run=label,
                judge=raw["judge"],
                judge_version=None if raw.get("judge_version") is None else str(raw["judge_version"]),
                subset=raw["subset"],
                group=raw["group"],
                group_value=None if raw.get("group_value") is None else str(raw["group_value"]),
                metric=raw["metric"],
                value=float(raw["value"]),
                ci_low=_optional_float(raw.get("ci_low")),
                ci_high=_optional_float(raw.get("ci_high")),
                n=int(raw["n"]),
                n_errors=int(raw.get("n_errors") or 0),
                ci_method=None if raw.get("ci_method") is None else str(raw["ci_method"]),
                axis=None if raw.get("axis") is None else str(raw["axis"]),
                reference_axis=None if raw.get("reference_axis") is None else str(raw["reference_axis"]),
                stand_in=raw.get("stand_in") is True,
            )
        )
    agreement: list[AgreementRow] = []
    for index, raw in enumerate(data.get("agreement") or []):
        where = f"agreement[{index}]"
        if not isinstance(raw, dict) or not isinstance(raw.get("judges"), list):
            problems.append(Problem(file, where, "judges", "expected an object with a list of judges"))
            continue
        out_of_range = _agreement_problems(raw, file, where)
        if out_of_range:
            problems += out_of_range
            continue
        agreement.append(
            AgreementRow(
                run=label,
                judges=tuple(str(j) for j in raw["judges"]),
                kappa=_optional_float(raw.get("kappa")),
                agreement=_optional_float(raw.get("agreement")),
                n=int(raw.get("n") or 0),
                subset=str(raw.get("subset") or "all"),
                view=None if raw.get("view") is None else str(raw["view"]),
            )
        )
    problems += _completeness_problems(data, file)
    if problems:
        raise DataValidationError(
            problems, hint="metrics.json is written by `vlguard eval`; rerun it to rebuild the file."
        )
    return run_info, rows, agreement


UTILITY_DIR = "utility"  # where `vlguard utility` writes, inside a run folder


def _is_utility_metrics(data: Any) -> bool:
    return (
        isinstance(data, dict) and isinstance(data.get("run"), dict) and data["run"].get("kind") == "utility"
    )


def parse_utility_metrics(data: Any, path: Path, label: str) -> list[UtilityScore]:
    """The scores of a ``vlguard utility`` metrics.json; every problem is listed."""
    _, rows, _ = parse_metrics(data, path, label)  # the common row checks (schema, fields, types)
    scores: list[UtilityScore] = []
    for row, raw in zip(rows, data["metrics"], strict=True):
        unit = str(raw.get("unit") or "fraction")
        scores.append(
            UtilityScore(
                run=label,
                engine=row.judge,
                engine_version=row.judge_version,
                task=row.subset,
                group=row.group,
                group_value=row.group_value,
                metric=row.metric,
                filter=str(raw.get("filter") or "none"),
                value=row.value,
                ci_low=row.ci_low,
                ci_high=row.ci_high,
                stderr=_optional_float(raw.get("stderr")),
                n=row.n,
                n_errors=row.n_errors,
                higher_is_better=bool(raw.get("higher_is_better", True)),
                unit=unit if unit in ("fraction", "points") else "points",
                primary=bool(raw.get("primary", False)),
                num_fewshot=raw.get("num_fewshot") if isinstance(raw.get("num_fewshot"), int) else None,
                limit=raw.get("limit") if isinstance(raw.get("limit"), int) else None,
                task_version=None if raw.get("task_version") is None else str(raw["task_version"]),
            )
        )
    return scores


def _load_utility(folder: Path, label: str) -> tuple[list[UtilityScore], dict[str, Any], dict[str, Any]]:
    """The scores, the manifest and metrics.json's ``run`` block of a ``RUN/utility`` folder."""
    metrics_path = folder / "metrics.json"
    data = _read_json(metrics_path)
    if not _is_utility_metrics(data):
        raise RunFolderError(
            f"{metrics_path}: not the metrics.json of `vlguard utility` (run.kind is not 'utility')"
        )
    manifest = RunFolder(folder).read_manifest() or {}
    return parse_utility_metrics(data, metrics_path, label), manifest, dict(data["run"])


def load_run(path: str | Path, label: str | None = None) -> RunData:
    """Load one run folder. ``label`` names the run in the report (default: the folder name).

    A run folder holds the safety results of ``vlguard eval`` (``metrics.json``), the capability
    results of ``vlguard utility`` (``utility/metrics.json``), or both. The capability folder itself
    (``RUN/utility``) is accepted too.
    """
    path = Path(path)
    if not path.is_dir():
        raise RunFolderError(f"{path}: run folder not found")
    metrics_path = path / "metrics.json"
    utility_dir = path / UTILITY_DIR
    own_utility = metrics_path.is_file() and _is_utility_metrics(_read_json(metrics_path))
    if own_utility:  # RUN/utility given directly: name the run after RUN
        label = label or path.resolve().parent.name
        scores, manifest, info = _load_utility(path, label)
        return RunData(
            label=label, path=path, manifest={}, run_info=info, metrics=(), agreement=(),
            utility=tuple(scores), utility_path=path, utility_manifest=manifest,
        )  # fmt: skip
    has_utility = (utility_dir / "metrics.json").is_file()
    if not metrics_path.is_file() and not has_utility:
        raise RunFolderError(
            f"{path}: no metrics.json; the run is unfinished or not a run folder (finish it with "
            "`vlguard eval`, or `vlguard utility` for capability results)"
        )
    label = label or path.resolve().name
    utility: list[UtilityScore] = []
    utility_manifest: dict[str, Any] = {}
    utility_info: dict[str, Any] = {}
    if has_utility:
        utility, utility_manifest, utility_info = _load_utility(utility_dir, label)
    if not metrics_path.is_file():  # capability results only: their run block says what produced them
        return RunData(
            label=label, path=path, manifest={}, run_info=utility_info, metrics=(), agreement=(),
            utility=tuple(utility), utility_path=utility_dir, utility_manifest=utility_manifest,
        )  # fmt: skip
    metrics_data = _read_json(metrics_path)
    run_info, rows, agreement = parse_metrics(metrics_data, metrics_path, label)

    # The JSONL stores of vlguard.runs drop a torn last line (a killed run) and reject edited files.
    folder = RunFolder(path)
    manifest = folder.read_manifest() or {}
    samples: dict[str, Sample] = {}
    for obj in folder.samples.read():
        sample = _sample_from_dict(obj, folder.samples.path)
        samples[sample.id] = sample
    generations = {g.sample_id: g for g in map(_generation_from_dict, folder.generations.read())}
    judgments = {
        judge: {j.sample_id: j for j in map(_judgment_from_dict, folder.judgments(judge).read())}
        for judge in folder.judge_names()
    }
    completeness = metrics_data.get("completeness")
    if not isinstance(completeness, dict) and samples:
        # A metrics.json from before completeness was recorded: count from the run's own files.
        completeness = {
            "samples": len(samples),
            "generated": len(set(samples) & set(generations)),
            "judged": {name: len(set(samples) & set(by_id)) for name, by_id in judgments.items()},
        }
    return RunData(
        label=label,
        path=path,
        manifest=manifest,
        run_info=run_info,
        metrics=tuple(rows),
        agreement=tuple(agreement),
        samples=samples,
        generations=generations,
        judgments=judgments,
        utility=tuple(utility),
        utility_path=utility_dir if has_utility else None,
        utility_manifest=utility_manifest,
        completeness=dict(completeness or {}),
    )


def _generation_from_dict(obj: dict[str, Any]) -> Generation:
    return Generation(
        sample_id=str(obj.get("sample_id", "")),
        response=str(obj.get("response") or ""),
        error=obj.get("error"),
        meta=obj.get("meta") or {},
    )


def _judgment_from_dict(obj: dict[str, Any]) -> Judgment:
    return Judgment(
        sample_id=str(obj.get("sample_id", "")),
        judge=str(obj.get("judge", "")),
        label=str(obj.get("label", "")),
        evidence=obj.get("evidence") or {},
    )


def _sample_from_dict(obj: dict[str, Any], file: Path) -> Sample:
    try:
        return Sample(
            id=str(obj["id"]),
            benchmark=str(obj.get("benchmark", "")),
            subset=str(obj["subset"]),
            prompt=str(obj.get("prompt", "")),
            image=obj.get("image"),
            reference=obj.get("reference"),
            category=obj.get("category"),
            subcategory=obj.get("subcategory"),
            should_refuse=bool(obj.get("should_refuse", False)),
            record_id=str(obj.get("record_id", "")),
        )
    except KeyError as err:
        raise RunFolderError(f"{file}: a sample lacks the field {err.args[0]!r}") from err


def load_runs(paths: Sequence[str | Path], labels: Sequence[str] | None = None) -> list[RunData]:
    """Load several runs; labels default to folder names, made unique when two folders share a name."""
    if not paths:
        raise RunFolderError("no run folder given")
    if labels is not None and len(labels) != len(paths):
        raise RunFolderError(f"{len(labels)} label(s) given for {len(paths)} run(s)")
    names = list(labels) if labels is not None else [Path(p).resolve().name for p in paths]
    seen: dict[str, int] = {}
    unique: list[str] = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return [load_run(p, label) for p, label in zip(paths, unique, strict=True)]
