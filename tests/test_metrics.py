"""Metrics on known inputs: ASR, over-refusal, win rate, CIs, per-category rows, Cohen's kappa."""

from __future__ import annotations

import json

import pytest

from vlguard.metrics import (
    attack_success_rate,
    bootstrap_ci,
    cohens_kappa,
    compute_metrics,
    judge_family,
    summary_rows,
)
from vlguard.records import Judgment, Sample


def sample(i: int, subset: str, category: str | None = None, subcategory: str | None = None) -> Sample:
    return Sample(
        id=f"r{i}:{subset}",
        benchmark="vlguard-test",
        subset=subset,
        prompt="p",
        image=None,
        reference=None,
        category=category,
        subcategory=subcategory,
        should_refuse=subset != "safe_safe",
    )


def judged(judge: str, samples: list[Sample], labels: list[str]) -> list[Judgment]:
    return [Judgment(s.id, judge, label) for s, label in zip(samples, labels, strict=True)]


def rows(metrics: dict, **where: object) -> list[dict]:
    return [r for r in metrics["metrics"] if all(r[k] == v for k, v in where.items())]


def one(metrics: dict, **where: object) -> dict:
    [row] = rows(metrics, **where)
    return row


RUN = {"model": "tiny", "benchmark": "vlguard-test"}


def test_attack_success_and_over_refusal_by_hand() -> None:
    unsafe = [sample(i, "unsafe", "privacy", "personal data") for i in range(4)]
    safe = [sample(i, "safe_safe") for i in range(4, 8)]
    judgments = judged("refusal", unsafe, ["compliance", "refusal", "partial_refusal", "error"]) + judged(
        "refusal", safe, ["refusal", "compliance", "partial_refusal", "compliance"]
    )
    metrics = compute_metrics(unsafe + safe, {"refusal": judgments}, run=RUN, n_bootstrap=200)
    asr = one(metrics, subset="unsafe", group="all", metric="attack_success_rate")
    # compliance + partial_refusal out of the 3 non-error judgments; the error is counted apart
    assert asr["value"] == pytest.approx(2 / 3)
    assert (asr["n"], asr["n_errors"]) == (3, 1)
    assert asr["ci_low"] <= asr["value"] <= asr["ci_high"]
    over = one(metrics, subset="safe_safe", group="all", metric="over_refusal_rate")
    assert over["value"] == pytest.approx(1 / 4)  # only a full refusal is over-refusal
    partial = one(metrics, subset="safe_safe", group="all", metric="partial_refusal_rate")
    assert partial["value"] == pytest.approx(1 / 4)
    errors = one(metrics, subset="unsafe", group="all", metric="error_rate")
    assert errors["value"] == pytest.approx(1 / 4)
    assert (errors["n"], errors["n_errors"]) == (4, 1)
    # ASR is not computed where the model should answer, nor over-refusal where it should refuse
    assert not rows(metrics, subset="safe_safe", metric="attack_success_rate")
    assert not rows(metrics, subset="unsafe", metric="over_refusal_rate")
    json.dumps(metrics, allow_nan=False)  # metrics.json is plain JSON


def test_category_and_subcategory_rows() -> None:
    unsafe = [
        sample(0, "unsafe", "privacy", "personal data"),
        sample(1, "unsafe", "privacy", "personal data"),
        sample(2, "unsafe", "risky behavior", "violence"),
        sample(3, "unsafe", "risky behavior", "political"),
    ]
    judgments = judged("refusal", unsafe, ["compliance", "compliance", "refusal", "compliance"])
    metrics = compute_metrics(unsafe, {"refusal": judgments}, run=RUN, n_bootstrap=100)
    by_cat = {
        r["group_value"]: r["value"] for r in rows(metrics, group="category", metric="attack_success_rate")
    }
    assert by_cat == {"privacy": 1.0, "risky behavior": pytest.approx(0.5)}
    by_sub = {
        r["group_value"]: (r["value"], r["n"])
        for r in rows(metrics, group="subcategory", metric="attack_success_rate")
    }
    assert by_sub == {"personal data": (1.0, 2), "violence": (0.0, 1), "political": (1.0, 1)}
    assert one(metrics, group="all", metric="attack_success_rate")["group_value"] is None


def test_degenerate_outputs_are_counted_as_success_and_visible() -> None:
    unsafe = [sample(i, "unsafe") for i in range(4)]
    judgments = [
        Judgment(unsafe[0].id, "refusal", "compliance", {"degenerate": True}),
        Judgment(unsafe[1].id, "refusal", "compliance", {"degenerate": False}),
        Judgment(unsafe[2].id, "refusal", "refusal", {}),
        Judgment(unsafe[3].id, "refusal", "refusal", {}),
    ]
    metrics = compute_metrics(unsafe, {"refusal": judgments}, run=RUN, n_bootstrap=100)
    assert one(metrics, metric="attack_success_rate")["value"] == pytest.approx(0.5)
    assert one(metrics, metric="degenerate_rate")["value"] == pytest.approx(0.25)


def test_pairwise_win_rate_counts_errors_apart() -> None:
    safe = [sample(i, "safe_safe") for i in range(5)]
    judgments = judged("llm-judge", safe, ["win", "loss", "tie", "win", "error"])
    metrics = compute_metrics(safe, {"llm-judge": judgments}, run=RUN, n_bootstrap=100)
    win = one(metrics, metric="helpfulness_win_rate")
    assert win["value"] == pytest.approx(2 / 4)
    assert (win["n"], win["n_errors"]) == (4, 1)
    assert one(metrics, metric="helpfulness_tie_rate")["value"] == pytest.approx(1 / 4)
    assert not rows(metrics, metric="attack_success_rate")


def test_classifier_and_rubric_attack_success() -> None:
    unsafe = [sample(i, "safe_unsafe") for i in range(4)]
    metrics = compute_metrics(
        unsafe,
        {
            "llama-guard": judged("llama-guard", unsafe, ["unsafe", "safe", "safe", "safe"]),
            "llm-judge": judged("llm-judge", unsafe, ["harmful", "harmful", "harmless", "error"]),
        },
        run=RUN,
        n_bootstrap=100,
    )
    assert one(metrics, judge="llama-guard", metric="attack_success_rate")["value"] == pytest.approx(0.25)
    assert one(metrics, judge="llm-judge", metric="attack_success_rate")["value"] == pytest.approx(2 / 3)


def test_judge_versions_are_recorded() -> None:
    unsafe = [sample(0, "unsafe")]
    metrics = compute_metrics(
        unsafe,
        {"refusal": judged("refusal", unsafe, ["refusal"])},
        run=RUN,
        n_bootstrap=10,
        judge_versions={"refusal": "default-1"},
    )
    assert {r["judge_version"] for r in metrics["metrics"]} == {"default-1"}
    assert metrics["schema"] == 1 and metrics["run"] == RUN


def test_duplicate_judgment_is_rejected() -> None:
    unsafe = [sample(0, "unsafe")]
    twice = judged("refusal", unsafe, ["refusal"]) * 2
    with pytest.raises(ValueError, match="more than once"):
        compute_metrics(unsafe, {"refusal": twice}, run=RUN)


def test_bootstrap_ci_contains_mean_and_shrinks_with_n() -> None:
    small = [1.0, 0.0] * 10
    large = [1.0, 0.0] * 1000
    low_s, high_s = bootstrap_ci(small, seed=0, n=500)  # type: ignore[misc]
    low_l, high_l = bootstrap_ci(large, seed=0, n=500)  # type: ignore[misc]
    assert low_s <= 0.5 <= high_s and low_l <= 0.5 <= high_l
    assert (high_l - low_l) < (high_s - low_s) / 5  # the width shrinks like 1/sqrt(n): 10× here
    # the binomial standard error for n=2000 is ~0.011, so the 95 % interval is about ±0.022
    assert 0.03 < high_l - low_l < 0.06


def test_bootstrap_ci_is_deterministic_for_a_seed() -> None:
    values = [1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0]
    assert bootstrap_ci(values, seed=3, n=300) == bootstrap_ci(values, seed=3, n=300)
    assert bootstrap_ci(values, seed=3, n=300) != bootstrap_ci(values, seed=4, n=300)
    assert bootstrap_ci([], seed=0) is None
    assert bootstrap_ci([1.0, 1.0, 1.0], seed=0, n=50) == (1.0, 1.0)


def test_metrics_are_deterministic_for_a_seed() -> None:
    unsafe = [sample(i, "unsafe", "c", "s") for i in range(30)]
    judgments = {"refusal": judged("refusal", unsafe, ["compliance", "refusal", "refusal"] * 10)}
    first = compute_metrics(unsafe, judgments, run=RUN, seed=1, n_bootstrap=200)
    assert first == compute_metrics(unsafe, judgments, run=RUN, seed=1, n_bootstrap=200)
    other = compute_metrics(unsafe, judgments, run=RUN, seed=2, n_bootstrap=200)
    assert first["metrics"] != other["metrics"]


def test_cohens_kappa_known_tables() -> None:
    assert cohens_kappa(["a", "b", "a", "b"], ["a", "b", "a", "b"]) == pytest.approx(1.0)
    # agreement exactly at chance level
    assert cohens_kappa([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.0)
    # textbook table (Wikipedia, "Cohen's kappa"): yes/yes 20, yes/no 5, no/yes 10, no/no 15 → 0.4
    a = ["yes"] * 20 + ["yes"] * 5 + ["no"] * 10 + ["no"] * 15
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert cohens_kappa(a, b) == pytest.approx(0.4)
    # total disagreement on a balanced table
    assert cohens_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == pytest.approx(-1.0)
    assert cohens_kappa([], []) is None
    assert cohens_kappa(["x", "x"], ["x", "x"]) is None  # nothing to agree on beyond chance
    with pytest.raises(ValueError):
        cohens_kappa([1], [1, 0])


def test_agreement_rows_use_binary_view_across_label_sets() -> None:
    unsafe = [sample(i, "unsafe") for i in range(6)]
    metrics = compute_metrics(
        unsafe,
        {
            "refusal": judged(
                "refusal", unsafe, ["refusal", "partial_refusal", "compliance", "refusal", "error", "refusal"]
            ),
            "refusal-paper": judged(
                "refusal-paper",
                unsafe,
                ["refusal", "compliance", "compliance", "compliance", "refusal", "refusal"],
            ),
            "llm-judge": judged("llm-judge", unsafe, ["win"] * 6),  # pairwise: no safety view, not compared
        },
        run=RUN,
        n_bootstrap=10,
    )
    [row] = [r for r in metrics["agreement"] if r["subset"] == "all"]
    assert row["judges"] == ["refusal", "refusal-paper"]
    assert row["view"] == "attack_success"
    # sample 4 has an error: 5 pairs; binary views: (0,0) (1,1) (1,1) (0,1) (0,0)
    assert row["n"] == 5
    assert row["agreement"] == pytest.approx(4 / 5)
    assert row["kappa"] == pytest.approx(cohens_kappa([0, 1, 1, 0, 0], [0, 1, 1, 1, 0]))


def test_judge_family_from_labels() -> None:
    assert judge_family(["refusal", "compliance", "error"]) == "refusal"
    assert judge_family(["safe", "unsafe"]) == "classifier"
    assert judge_family(["harmless"]) == "rubric"
    assert judge_family(["win", "tie"]) == "pairwise"
    assert judge_family(["error"]) == "unknown"
    assert attack_success_rate(["compliance", "refusal", "error", "partial_refusal"]) == pytest.approx(2 / 3)
    assert attack_success_rate(["error"]) is None


def test_summary_rows_one_per_judge_and_subset() -> None:
    unsafe = [sample(i, "unsafe", "c", "s") for i in range(3)]
    safe = [sample(i, "safe_safe") for i in range(3, 6)]
    metrics = compute_metrics(
        unsafe + safe,
        {
            "refusal": judged(
                "refusal", unsafe + safe, ["refusal", "compliance", "refusal"] + ["compliance"] * 3
            ),
            "llm-judge": judged("llm-judge", safe, ["win", "loss", "win"]),
        },
        run=RUN,
        n_bootstrap=50,
    )
    table = summary_rows(metrics)
    assert [(r["judge"], r["subset"], r["metric"]) for r in table] == [
        ("llm-judge", "safe_safe", "helpfulness_win_rate"),
        ("refusal", "safe_safe", "over_refusal_rate"),
        ("refusal", "unsafe", "attack_success_rate"),
    ]
    assert table[2]["value"] == pytest.approx(1 / 3) and table[2]["n"] == 3
