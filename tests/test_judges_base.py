"""The shared parts of the model judges: verdicts that need no model, and batches that fail alone."""

from __future__ import annotations

from vlguard.judges.base import ERROR, JudgeInput, judge_batches, settle_without_model
from vlguard.records import Judgment


def _items() -> list[JudgeInput]:
    return [
        JudgeInput("a", "q", "fine answer"),
        JudgeInput("b", "q", "", generation_error="CUDA out of memory"),
        JudgeInput("c", "q", "", content_policy=True),
        JudgeInput("d", "q", "another answer"),
        JudgeInput("e", "q", "bad batch"),
    ]


def test_failed_generations_and_api_refusals_are_settled_without_the_model() -> None:
    verdicts, todo = settle_without_model(
        "j", _items(), lambda item: Judgment(item.sample_id, "j", "safe", {"content_policy": True})
    )
    assert todo == [0, 3, 4]
    assert verdicts[1].label == ERROR and verdicts[1].evidence["reason"] == "generation_error"
    assert verdicts[1].evidence["detail"] == "CUDA out of memory"
    assert verdicts[2] == Judgment("c", "j", "safe", {"content_policy": True})


def test_a_failing_batch_gives_model_errors_for_its_items_only() -> None:
    items = _items()
    seen: list[list[str]] = []

    def run(batch: list[JudgeInput]) -> list[Judgment]:
        seen.append([item.sample_id for item in batch])
        if any(item.response == "bad batch" for item in batch):
            raise RuntimeError("CUDA out of memory")
        return [Judgment(item.sample_id, "j", "safe") for item in batch]

    verdicts = judge_batches("j", items, [0, 3, 4], 2, run)
    assert seen == [["a", "d"], ["e"]]
    assert verdicts[0].label == verdicts[3].label == "safe"
    assert verdicts[4].label == ERROR and verdicts[4].evidence == {
        "reason": "model_error",
        "detail": "CUDA out of memory",
    }
    assert set(verdicts) == {0, 3, 4}
