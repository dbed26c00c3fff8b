"""`vlguard utility` without running an engine: results → metrics.json rows, settings, suites, --help."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vlguard.errors import ConfigError
from vlguard.utility import SUITES, UtilityConfig, UtilityFolder, build_metrics
from vlguard.utility.results import Z95, json_safe, metric_rows, task_record
from vlguard.utility.suites import LM_EVAL, LMMS_EVAL, suite_help

# The shape both engines return for a group (mmlu-like) with two subtasks; numbers are arbitrary.
RAW_GROUP = {
    "results": {
        "mini_mmlu": {"alias": "mini_mmlu", "acc,none": 0.3, "acc_stderr,none": 0.05},
        "mini_mmlu_a": {"alias": " - a", "acc,none": 0.25, "acc_stderr,none": 0.07, "sample_len": 40},
        "mini_mmlu_b": {"alias": " - b", "acc,none": 0.35, "acc_stderr,none": "N/A", "sample_len": 60},
    },
    "groups": {"mini_mmlu": {"alias": "mini_mmlu", "acc,none": 0.31, "acc_stderr,none": 0.05}},
    "group_subtasks": {"mini_mmlu": ["mini_mmlu_a", "mini_mmlu_b"], "mini_mmlu_a": [], "mini_mmlu_b": []},
    "versions": {"mini_mmlu": 2, "mini_mmlu_a": 1.0, "mini_mmlu_b": 1.0},
    "n-shot": {"mini_mmlu_a": 5, "mini_mmlu_b": 5},
    "n-samples": {
        "mini_mmlu_a": {"original": 100, "effective": 40},
        "mini_mmlu_b": {"original": 60, "effective": 60},
    },
    "higher_is_better": {"mini_mmlu": {"acc": True}},
    "configs": {"mini_mmlu_a": {"task": "mini_mmlu_a", "doc_to_text": object()}},
    "samples": {"mini_mmlu_a": [{"doc_id": 0, "acc": 1.0}]},
}


def _record(raw: dict, task: str = "mini_mmlu", engine: str = LM_EVAL) -> dict:
    return task_record(
        raw, task=task, engine=engine, engine_version="0.4.13", settings={"limit": 40, "num_fewshot": None}
    )


def test_a_group_gives_its_score_over_all_documents_and_one_row_per_subtask() -> None:
    rows = metric_rows(_record(RAW_GROUP))
    top = [r for r in rows if r["group"] == "all"]
    assert len(top) == 1 and top[0]["primary"]
    row = top[0]
    # The group's own aggregate (from "groups"), over the documents of every subtask.
    assert (row["subset"], row["metric"], row["filter"], row["value"], row["n"]) == (
        "mini_mmlu",
        "acc",
        "none",
        0.31,
        100,
    )
    assert row["ci_low"] == pytest.approx(0.31 - Z95 * 0.05)
    assert row["ci_high"] == pytest.approx(0.31 + Z95 * 0.05)
    assert (row["ci_method"], row["ci_level"]) == ("normal-engine-stderr", 0.95)
    assert (row["judge"], row["judge_version"], row["task_version"], row["limit"]) == (
        "lm-eval",
        "0.4.13",
        2,
        40,
    )
    subtasks = {r["group_value"]: r for r in rows if r["group"] == "subtask"}
    assert set(subtasks) == {"mini_mmlu_a", "mini_mmlu_b"}
    assert (subtasks["mini_mmlu_a"]["n"], subtasks["mini_mmlu_a"]["num_fewshot"]) == (40, 5)
    # No stderr from the engine ("N/A"): no interval, never a made-up one.
    assert subtasks["mini_mmlu_b"]["stderr"] is None and subtasks["mini_mmlu_b"]["ci_low"] is None


def test_filters_non_numbers_and_points_scales() -> None:
    gsm = {
        "exact_match,strict-match": 0.2,
        "exact_match_stderr,strict-match": 0.01,
        "exact_match,flexible-extract": 0.3,
        "exact_match_stderr,flexible-extract": 0.02,
    }
    bench = {
        "gpt_eval_score,none": 61.5,
        "gpt_eval_score_stderr,none": "N/A",
        "submission,none": None,
        "exact_match_stderr_clt,none": 0.3,
    }
    raw = {
        "results": {"gsm": gsm, "bench": bench},
        "n-samples": {"gsm": {"original": 10, "effective": 10}, "bench": {"original": 5, "effective": 5}},
    }
    rows = metric_rows(_record(raw, "gsm"))
    assert [(r["filter"], r["primary"]) for r in rows] == [
        ("strict-match", True),
        ("flexible-extract", False),
    ]
    bench = metric_rows(_record(raw, "bench", LMMS_EVAL))
    # The submission "metric" (a file, None here) and the extra stderr variants are not scores.
    assert [(r["metric"], r["unit"], r["value"]) for r in bench] == [("gpt_eval_score", "points", 61.5)]


def test_records_are_json_and_drop_sample_logs() -> None:
    record = _record(RAW_GROUP)
    assert "samples" not in record
    assert isinstance(record["configs"]["mini_mmlu_a"]["doc_to_text"], str)  # a function, as text
    assert json.loads(json.dumps(record)) == record
    import numpy as np

    assert json_safe({"a": np.float64(0.5), "b": np.int64(3), "c": (1, 2), "d": np.bool_(True)}) == {
        "a": 0.5,
        "b": 3,
        "c": [1, 2],
        "d": True,
    }


def test_build_metrics_reads_every_finished_task(tmp_path: Path) -> None:
    folder = UtilityFolder(tmp_path / "run")
    (folder.path / "tasks").mkdir(parents=True)
    record = _record(RAW_GROUP)
    folder.task_path("mini_mmlu").write_text(json.dumps(record))
    metrics = build_metrics(folder, {"model": "m", "engine": LM_EVAL})
    assert (
        metrics["schema"] == 1
        and metrics["run"]["kind"] == "utility"
        and metrics["run"]["tasks"] == ["mini_mmlu"]
    )
    assert metrics["run"]["n_samples"] == 100 and metrics["agreement"] == []
    # A task name never becomes a path outside the folder.
    assert folder.task_path("../../etc/passwd").parent == folder.path / "tasks"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give a suite"),
        ({"suite": "quick", "tasks": ("mmlu",)}, "not both"),
        ({"suite": "full"}, "unknown suite 'full'"),
        ({"tasks": ("mmlu",), "limit": 0}, "limit"),
        ({"tasks": ("mmlu", "mmlu")}, "twice"),
        ({"tasks": ("mmlu",), "engine": "helm"}, "unknown engine"),
    ],
)
def test_config_errors_are_clear(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        UtilityConfig(model="tiny", **kwargs)


def test_limit_and_shots_override_the_suite() -> None:
    config = UtilityConfig(model="tiny", suite="quick", limit=3, num_fewshot=1)
    specs = config.task_specs(LMMS_EVAL)
    assert [s.task for s in specs] == [s.task for s in SUITES["quick"].tasks[LMMS_EVAL]]
    assert {(s.limit, s.num_fewshot) for s in specs} == {(3, 1)}
    paper = UtilityConfig(model="tiny", suite="paper").task_specs(LM_EVAL)
    assert [(s.task, s.limit, s.num_fewshot) for s in paper] == [("mmlu", None, 5)]
    assert UtilityConfig(model="org/model", tasks=("a",)).resolved_run_dir() == Path("runs/model")


def test_help_documents_the_suites() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "vlguard.cli.main", "utility", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for suite in SUITES.values():
        assert f"{suite.name}:" in out
        for specs in suite.tasks.values():
            assert all(spec.task in out for spec in specs)
    assert "lmms-eval" in out and "lm-eval" in out and "--adapter" in out
    assert suite_help().count("limit=200") == 4
