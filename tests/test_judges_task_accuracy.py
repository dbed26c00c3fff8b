"""The ``accuracy`` judge: the papers' scoring rules for SST-2, AG News and GSM8K, labels and evidence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from vlguard.benchmarks.gsm8k import final_number
from vlguard.errors import ConfigError
from vlguard.judges import judge_jsonl, make_judge
from vlguard.judges.base import JudgeInput
from vlguard.judges.task_accuracy import TaskAccuracyJudge


def _item(task: str, response: str, reference: str | None, **kwargs: Any) -> JudgeInput:
    return JudgeInput(f"{task}:x", "instruction", response, task, False, reference=reference, **kwargs)


def _labels(judge: TaskAccuracyJudge, task: str, gold: str, responses: list[str]) -> list[str]:
    return [j.label for j in judge.judge([_item(task, r, gold) for r in responses])]


def test_sst2_exact_match_is_lisa_and_booster_and_contains_is_vaccine() -> None:
    responses = ["positive", " Positive\n", "POSITIVE", "positive.", "The sentiment is positive", "negative"]
    assert _labels(TaskAccuracyJudge(), "sst2", "positive", responses) == [
        "correct", "correct", "incorrect", "incorrect", "incorrect", "incorrect",
    ]  # fmt: skip
    assert _labels(TaskAccuracyJudge(match="contains"), "sst2", "positive", responses) == [
        "correct", "correct", "incorrect", "correct", "correct", "incorrect",
    ]  # fmt: skip
    # Containment is lenient, as in Vaccine: naming both classes is correct for either gold class.
    both = "positive or negative"
    contains = TaskAccuracyJudge(match="contains")
    assert (
        _labels(contains, "sst2", "positive", [both])
        == _labels(contains, "sst2", "negative", [both])
        == ["correct"]
    )


def test_agnews_accepts_the_papers_two_forms_per_class() -> None:
    judge = TaskAccuracyJudge()
    assert _labels(judge, "agnews", "Sci/Tech", ["Sci/Tech", "sci", "Sci", "science", "Business"]) == [
        "correct", "correct", "incorrect", "incorrect", "incorrect",
    ]  # fmt: skip
    assert _labels(judge, "agnews", "World", ["World", "world", "World news"]) == [
        "correct",
        "correct",
        "incorrect",
    ]
    assert _labels(TaskAccuracyJudge(match="contains"), "agnews", "Sci/Tech", ["It is about science"]) == [
        "correct"
    ]
    verdict = judge.judge([_item("agnews", " Sports ", "Sports")])[0]
    assert verdict.evidence == {
        "task": "agnews",
        "answer": "Sports",
        "gold": "Sports",
        "rule": "exact: Sports / sports",
    }


@pytest.mark.parametrize(
    ("text", "number", "rule"),
    [
        ("3 + 4 = 7 apples.\nThe final answer is: 7", 7.0, "answer_prompt"),
        ("The final answer is: $1,234.50 in total, not 99", 1234.5, "answer_prompt"),
        ("So 12 - 3 = 9\n#### 9", 9.0, "answer_marker"),
        ("It costs 5 dollars, then 8, so -3 left", -3.0, "last_number"),
        ("4 and 6. The final answer is: unknown", 6.0, "last_number"),
        ("I cannot tell.", None, "no_number"),
        ("1,000,000 people", 1_000_000.0, "last_number"),
    ],
)
def test_final_number(text: str, number: float | None, rule: str) -> None:
    assert final_number(text) == (number, rule)


def test_gsm8k_compares_final_numbers_of_response_and_gold() -> None:
    gold = (
        "She has 16 - 3 - 4 = <<16-3-4=9>>9 eggs.\nShe makes 9 * 2 = $<<9*2=18>>18.\nThe final answer is:  18"
    )
    responses = [
        "16 - 3 - 4 = 9, 9 * 2 = 18.\nThe final answer is: 18",
        "The final answer is: 18.00",
        "She makes $18 every day",  # no answer prompt: the last number
        "The final answer is: 9, since 9 * 2 = 18",  # the first number after the prompt counts
        "no idea",
        "",
    ]
    judge = TaskAccuracyJudge()
    verdicts = judge.judge([_item("gsm8k", r, gold) for r in responses])
    assert [v.label for v in verdicts] == [
        "correct",
        "correct",
        "correct",
        "incorrect",
        "incorrect",
        "incorrect",
    ]
    assert verdicts[3].evidence == {"task": "gsm8k", "answer": 9.0, "gold": 18.0, "rule": "answer_prompt"}
    assert verdicts[4].evidence["answer"] is None and verdicts[4].evidence["rule"] == "no_number"
    # the raw GSM8K answer (with ####) works as a gold answer too
    assert _labels(judge, "gsm8k", "2+3=5\n#### 5", ["5"]) == ["correct"]


def test_failures_skips_and_bad_references() -> None:
    judge = TaskAccuracyJudge()
    verdicts = judge.judge(
        [
            _item("sst2", "", "positive", generation_error="CUDA out of memory"),
            _item("sst2", "", "positive", content_policy=True),
            _item("safe_safe", "Sure, here it is.", "a reference answer"),
            _item("sst2", "positive", None),
            _item("sst2", "positive", "happy"),
            _item("gsm8k", "5", "no number here"),
        ]
    )
    assert [v.label for v in verdicts] == ["error", "incorrect", "skipped", "error", "error", "error"]
    assert [v.evidence.get("reason") for v in verdicts] == [
        "generation_error", None, "no_task_scorer", "no_reference", "bad_reference", "bad_reference",
    ]  # fmt: skip
    assert verdicts[1].evidence["generation_content_policy"] is True
    assert "'happy' is not one of positive, negative" in verdicts[4].evidence["detail"]
    # the task option scores records whose subset says nothing
    forced = TaskAccuracyJudge(task="sst2").judge([_item("", "negative", "negative")])
    assert forced[0].label == "correct" and forced[0].evidence["task"] == "sst2"


def test_registry_options_and_description() -> None:
    judge = make_judge("accuracy", match="contains")
    assert judge.describe() == {"judge": "accuracy", "version": "1", "match": "contains", "task": None}
    with pytest.raises(ConfigError, match="match must be one of exact, contains"):
        make_judge("accuracy", match="fuzzy")
    with pytest.raises(ConfigError, match="task must be one of sst2, agnews, gsm8k"):
        make_judge("accuracy", task="mnli")


def test_judge_a_jsonl_file_of_task_responses(tmp_path: Path) -> None:
    records = [
        {"id": "a", "prompt": "p", "response": "negative", "reference": "negative", "subset": "sst2"},
        {"id": "b", "prompt": "p", "response": "positive", "reference": "negative", "subset": "sst2"},
        {"id": "c", "prompt": "p", "response": "#### 12", "reference": "#### 12", "subset": "gsm8k"},
    ]
    source = tmp_path / "responses.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "labels.jsonl"
    assert judge_jsonl(make_judge("accuracy"), source, out) == 3
    labels = [json.loads(line)["label"] for line in out.read_text().splitlines()]
    assert labels == ["correct", "incorrect", "correct"]
