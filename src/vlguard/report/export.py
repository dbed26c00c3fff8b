"""Export the report's tables as JSON (one file) or CSV (one file per table), for spreadsheets and
scripts. Metrics are in long format: one row per run, judge, subset, metric and group value, with the
delta to the baseline run."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from vlguard.fileio import atomic_write_text
from vlguard.report.document import Report
from vlguard.report.tables import agreement_records, metric_records, run_settings
from vlguard.report.tradeoff import tradeoff_records

METRIC_COLUMNS = (
    "run",
    "judge",
    "judge_version",
    "subset",
    "group",
    "group_value",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "ci_method",
    "n",
    "n_errors",
    "delta_vs_baseline",
)
AGREEMENT_COLUMNS = ("run", "judges", "subset", "view", "kappa", "agreement", "n")
UTILITY_COLUMNS = (
    "run",
    "engine",
    "engine_version",
    "task",
    "group",
    "group_value",
    "metric",
    "filter",
    "value",
    "ci_low",
    "ci_high",
    "stderr",
    "n",
    "n_errors",
    "unit",
    "primary",
    "num_fewshot",
    "limit",
    "task_version",
)
COST_COLUMNS = ("run", "measure", "delta", "ci_low", "ci_high", "method", "verdict", "text")


def utility_records(report: Report) -> list[dict[str, Any]]:
    """Every capability score of every run as a flat dict."""
    return [dict(score.__dict__) for run in report.runs for score in run.utility]


def report_tables(report: Report) -> dict[str, Any]:
    """The report's tables as plain JSON-ready data."""
    runs = list(report.runs)
    return {
        "schema": 1,
        "baseline": runs[0].label,
        "intervals_note": report.intervals_note,
        "runs": [
            {"label": run.label, "path": str(run.path), "run": run.run_info, "settings": run_settings(run)}
            for run in runs
        ],
        "metrics": metric_records(runs),
        "agreement": agreement_records(runs),
        "warnings": list(report.warnings),
        "incomplete": list(report.incomplete),
        "utility": utility_records(report),
        "tradeoff": tradeoff_records(report.tradeoff),
    }


def write_json(report: Report, out_dir: Path) -> list[Path]:
    """Write ``report.json``; returns the files written."""
    path = out_dir / "report.json"
    atomic_write_text(path, json.dumps(report_tables(report), indent=2, ensure_ascii=False) + "\n")
    return [path]


def _write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> Path:
    handle = io.StringIO(newline="")
    writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        # None becomes an empty cell; floats are written with str(), which round-trips exactly.
        writer.writerow({k: "" if row.get(k) is None else row[k] for k in columns})
    return atomic_write_text(path, handle.getvalue())


def write_csv(report: Report, out_dir: Path) -> list[Path]:
    """Write ``metrics.csv``, ``agreement.csv`` and ``runs.csv``; returns the files written."""
    runs = list(report.runs)
    settings = [{"run": run.label, **run_settings(run)} for run in runs]
    setting_columns = tuple(dict.fromkeys(k for row in settings for k in row))
    files = [
        _write_csv(out_dir / "metrics.csv", METRIC_COLUMNS, metric_records(runs)),
        _write_csv(out_dir / "agreement.csv", AGREEMENT_COLUMNS, agreement_records(runs)),
        _write_csv(out_dir / "runs.csv", setting_columns, settings),
    ]
    if any(run.utility for run in runs):
        files.append(_write_csv(out_dir / "utility.csv", UTILITY_COLUMNS, utility_records(report)))
        files.append(
            _write_csv(out_dir / "costs.csv", COST_COLUMNS, tradeoff_records(report.tradeoff)["costs"])
        )
    return files
