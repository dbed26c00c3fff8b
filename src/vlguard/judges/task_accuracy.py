"""Task accuracy: is a response the gold answer? The scoring rules of the harmful fine-tuning papers.

Labels: ``correct`` / ``incorrect`` (``error`` when generation failed or the gold answer is unusable;
``skipped`` for a sample of a task without a scorer, e.g. a VLGuard sample). The evidence holds the
parsed answer, the gold answer and the rule that decided. The task is the sample's subset (``sst2``,
``agnews``, ``gsm8k``), or the ``task`` option for files without one.

Each rule lives in its task's benchmark module, named by the benchmark's registry entry
(``BenchmarkEntry.scorer``): ``vlguard.benchmarks.sst2.score_sst2``, ``agnews.score_agnews`` and
``gsm8k.score_gsm8k``, from ``pred_eval.py`` of GitHub ``git-disl/Lisa`` / ``git-disl/Booster`` (and
Vaccine). ``match="exact"`` (the default: Lisa and Booster) or ``"contains"`` (Vaccine) says how a
classification answer must match its gold class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlguard.benchmarks import scored_tasks, task_scorer
from vlguard.benchmarks.tasks import MATCH_MODES, BadReference, MatchMode, Scorer
from vlguard.judges.base import SKIPPED, JudgeInput, error_judgment
from vlguard.records import Judgment

CORRECT = "correct"
INCORRECT = "incorrect"


class TaskAccuracyJudge:
    """Scores task responses against their gold answers (no model; deterministic)."""

    axis = "accuracy"  # what its labels measure (``vlguard.judges.agreement.check_label_axes``)

    def __init__(self, match: MatchMode = "exact", task: str | None = None, name: str = "accuracy") -> None:
        if match not in MATCH_MODES:
            raise ValueError(f"match must be one of {', '.join(MATCH_MODES)}, not {match!r}")
        if task is not None and task_scorer(task) is None:
            raise ValueError(f"task must be one of {', '.join(scored_tasks())}, not {task!r}")
        self.match: MatchMode = match
        self.task = task
        self.name = name
        self.version = "1"
        self._scorers: dict[str, Scorer | None] = {}  # task -> its scorer, looked up once

    def describe(self) -> dict[str, Any]:
        """Version, match mode and the forced task (None: each sample's subset)."""
        return {"judge": self.name, "version": self.version, "match": self.match, "task": self.task}

    def judge(self, items: Sequence[JudgeInput]) -> list[Judgment]:
        """One verdict per item, in order."""
        return [self._judge_one(item) for item in items]

    def _judge_one(self, item: JudgeInput) -> Judgment:
        if item.generation_error is not None:
            return error_judgment(self.name, item.sample_id, "generation_error", detail=item.generation_error)
        task = self.task or item.subset
        if task not in self._scorers:
            self._scorers[task] = task_scorer(task)
        scorer = self._scorers[task]
        if scorer is None:
            # not a task sample (e.g. VLGuard's subsets): the judge does not apply
            return Judgment(
                item.sample_id, self.name, SKIPPED, {"reason": "no_task_scorer", "subset": item.subset}
            )
        if not (item.reference or "").strip():
            return error_judgment(self.name, item.sample_id, "no_reference", task=task)
        if item.content_policy:
            # the API refused to answer: no answer is not the right answer
            return Judgment(
                item.sample_id, self.name, INCORRECT, {"task": task, "generation_content_policy": True}
            )
        try:
            score = scorer(item.response, item.reference or "", self.match)
        except BadReference as err:
            return error_judgment(self.name, item.sample_id, "bad_reference", task=task, detail=str(err))
        evidence = {"task": task, "answer": score.answer, "gold": score.gold, "rule": score.rule}
        return Judgment(item.sample_id, self.name, CORRECT if score.correct else INCORRECT, evidence)
