"""Turn an engine's raw results into vlguard's records: a task record (``tasks/<task>.json``), the
engine's per-sample logs (``samples/<task>.jsonl``) and ``metrics.json`` rows.

Both engines return the same shape (lmms-eval is a fork of lm-eval): ``results`` (per task or group:
``"<metric>,<filter>": value`` and ``"<metric>_stderr,<filter>": stderr``), ``groups``,
``group_subtasks``, ``versions``, ``n-shot``, ``n-samples``, ``higher_is_better``, ``configs`` and,
with sample logging on, ``samples`` (per leaf task, one dict per document).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

# 97.5th percentile of the standard normal: value ± Z95 × stderr is the 95 % interval.
Z95 = 1.959963984540054

# How the intervals are made: value ± Z95 × the engine's own stderr (recorded as each row's ci_method).
CI_NORMAL_STDERR = "normal-engine-stderr"

# Metrics whose scale is not a fraction in [0, 1]: lmms-eval's GPT-scored MMBench / MM-Vet (0-100)
# and MME (a sum of per-subtask scores).
POINTS_METRICS = frozenset({"gpt_eval_score", "mme_perception_score", "mme_cognition_score"})
# Keys of a results entry that are not metrics.
_NOT_METRICS = frozenset({"alias", "name", "sample_len", "sample_count", " ", ""})


def task_file_name(task: str) -> str:
    """A task name as a file name in the run folder (engine task names are identifiers, but a name from
    a task file must never become a path outside the folder)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in task).strip(".")
    return cleaned or "task"


def json_safe(value: Any) -> Any:
    """``value`` with numpy scalars, tuples and sets made JSON-friendly; anything else unknown becomes
    its string form (e.g. an image object inside a logged document)."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    return str(obj)


def _number(value: Any) -> float | None:
    """A finite float, or None for "N/A", None, NaN, lists and other non-numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def task_record(
    raw: Mapping[str, Any], *, task: str, engine: str, engine_version: str, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """What a finished task leaves in ``tasks/<task>.json``: the engine's numbers and settings as it
    reported them (no sample logs: they go to ``samples/<task>.jsonl``)."""
    return json_safe(
        {
            "task": task,
            "engine": engine,
            "engine_version": engine_version,
            "settings": dict(settings),
            "results": raw.get("results", {}),
            "groups": raw.get("groups", {}),
            "group_subtasks": raw.get("group_subtasks", {}),
            "versions": raw.get("versions", {}),
            "n_shot": raw.get("n-shot", {}),
            "n_samples": raw.get("n-samples", {}),
            "higher_is_better": raw.get("higher_is_better", {}),
            "configs": raw.get("configs", {}),
        }
    )


def sample_lines(raw: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The engine's per-sample logs, one dict per document and filter, tagged with their leaf task."""
    for leaf, samples in (raw.get("samples") or {}).items():
        for sample in samples:
            yield json_safe({"task": leaf, **sample})


def leaf_tasks(record: Mapping[str, Any], name: str) -> list[str]:
    """The leaf tasks under ``name`` (itself when it is a task, not a group)."""
    children = record.get("group_subtasks", {}).get(name)
    if not children:
        return [name]
    leaves: list[str] = []
    for child in children:
        leaves += leaf_tasks(record, child)
    return leaves


def _n_docs(record: Mapping[str, Any], name: str) -> int:
    n_samples = record.get("n_samples", {})
    total = 0
    for leaf in leaf_tasks(record, name):
        counts = n_samples.get(leaf) or {}
        total += int(counts.get("effective", counts.get("original", 0)) or 0)
    return total


def _entry(record: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    groups = record.get("groups") or {}
    entry = groups.get(name) or record.get("results", {}).get(name) or {}
    return entry if isinstance(entry, Mapping) else {}


def unit_of(metric: str, value: float) -> str:
    """``fraction`` (a rate in [0, 1], shown as %) or ``points`` (a score on its own scale)."""
    return "points" if metric in POINTS_METRICS or not 0.0 <= value <= 1.0 else "fraction"


def _rows_for(
    record: Mapping[str, Any], name: str, *, group: str, group_value: str | None, n_failed: int
) -> list[dict[str, Any]]:
    entry = _entry(record, name)
    higher = record.get("higher_is_better", {}).get(name) or {}
    n_shot = record.get("n_shot", {}).get(name)
    rows: list[dict[str, Any]] = []
    for key, raw_value in entry.items():
        if key in _NOT_METRICS or "," not in key:
            continue
        metric, _, filter_name = key.partition(",")
        if "_stderr" in metric:
            continue
        value = _number(raw_value)
        if value is None:
            continue  # e.g. a submission-file "metric" that returns a path or None
        stderr = _number(entry.get(f"{metric}_stderr,{filter_name}"))
        unit = unit_of(metric, value)
        ci_low = ci_high = None
        if stderr is not None:
            ci_low, ci_high = value - Z95 * stderr, value + Z95 * stderr
            if unit == "fraction":
                ci_low, ci_high = max(0.0, ci_low), min(1.0, ci_high)
        rows.append(
            {
                "judge": record["engine"],
                "judge_version": record["engine_version"],
                "subset": record["task"],
                "group": group,
                "group_value": group_value,
                "metric": metric,
                "filter": filter_name,
                "value": value,
                "stderr": stderr,
                "ci_low": ci_low,
                "ci_high": ci_high,
                "ci_method": CI_NORMAL_STDERR if stderr is not None else None,
                "ci_level": 0.95,
                "n": _n_docs(record, name),
                "n_errors": n_failed,
                "higher_is_better": bool(higher.get(metric, True)),
                "unit": unit,
                "primary": False,
                "task_version": json_safe(record.get("versions", {}).get(name)),
                "num_fewshot": n_shot if isinstance(n_shot, int) else None,
                "limit": record.get("settings", {}).get("limit"),
            }
        )
    return rows


def metric_rows(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``metrics.json`` rows of one task record: the task (group ``all``; its first metric is the
    ``primary`` one, the score the report compares) and, for a group such as ``mmlu``, each subtask
    (group ``subtask``)."""
    task = record["task"]
    n_failed = int(record.get("n_failed") or 0)
    rows = _rows_for(record, task, group="all", group_value=None, n_failed=n_failed)
    if rows:
        rows[0]["primary"] = True
    if record.get("group_subtasks", {}).get(task):
        for name in sorted(set(record.get("results", {})) - {task}):
            rows += _rows_for(record, name, group="subtask", group_value=name, n_failed=0)
    return rows
