"""The accuracy metric family: ``correct`` / ``incorrect`` labels give ``accuracy`` rows with CIs."""

from __future__ import annotations

from typing import Any

import pytest

from vlguard.metrics import compute_metrics, judge_family, summary_rows
from vlguard.records import Judgment, Sample


def task_sample(i: int, gold: str) -> Sample:
    return Sample(
        id=f"sst2:dev:{i}",
        benchmark="sst2",
        subset="sst2",
        prompt="Analyze the sentiment of the input, and respond only positive or negative",
        image=None,
        reference=gold,
        category=gold,
        subcategory=None,
        should_refuse=False,
        input=f"sentence {i}",
    )


def only(metrics: dict[str, Any], **where: Any) -> dict[str, Any]:
    [row] = [r for r in metrics["metrics"] if all(r[k] == v for k, v in where.items())]
    return row


def test_accuracy_family_is_decided_from_labels() -> None:
    assert judge_family(["correct", "incorrect", "error", "skipped"]) == "accuracy"
    assert judge_family(["correct"]) == "accuracy"
    assert judge_family(["correct", "refusal"]) == "unknown"


def test_accuracy_rows_by_hand() -> None:
    golds = ["positive", "positive", "negative", "negative", "negative", "positive", "negative"]
    samples = [task_sample(i, g) for i, g in enumerate(golds)]
    labels = ["correct", "incorrect", "correct", "correct", "error", "correct", "skipped"]
    judgments = [Judgment(s.id, "accuracy", label) for s, label in zip(samples, labels, strict=True)]
    metrics = compute_metrics(samples, {"accuracy": judgments}, run={"benchmark": "sst2"}, n_bootstrap=300)

    overall = only(metrics, subset="sst2", group="all", metric="accuracy")
    # 4 correct of the 5 judged; the error is counted apart and the skipped sample not at all
    assert overall["value"] == pytest.approx(4 / 5)
    assert (overall["n"], overall["n_errors"]) == (5, 1)
    assert 0.0 <= overall["ci_low"] <= overall["value"] <= overall["ci_high"] <= 1.0
    assert overall["ci_low"] < overall["ci_high"]
    positive = only(metrics, subset="sst2", group="category", group_value="positive", metric="accuracy")
    assert (positive["value"], positive["n"]) == (pytest.approx(2 / 3), 3)
    negative = only(metrics, subset="sst2", group="category", group_value="negative", metric="accuracy")
    assert (negative["value"], negative["n"], negative["n_errors"]) == (1.0, 2, 1)
    errors = only(metrics, subset="sst2", group="all", metric="error_rate")
    assert (errors["value"], errors["n"]) == (pytest.approx(1 / 6), 6)
    # no safety metric for a task judge, and no judge agreement row
    assert {r["metric"] for r in metrics["metrics"]} == {"accuracy", "error_rate"}
    assert metrics["agreement"] == []

    [headline] = summary_rows(metrics)
    assert (headline["judge"], headline["subset"], headline["metric"]) == ("accuracy", "sst2", "accuracy")
    assert headline["value"] == pytest.approx(0.8)


def test_accuracy_does_not_depend_on_should_refuse() -> None:
    # a task item that (oddly) should be refused is still scored: accuracy applies to every sample
    sample = Sample("t:1", "t", "t", "p", None, "x", None, None, should_refuse=True)
    metrics = compute_metrics(
        [sample], {"accuracy": [Judgment("t:1", "accuracy", "correct")]}, run={}, n_bootstrap=10
    )
    assert only(metrics, group="all", metric="accuracy")["value"] == 1.0
