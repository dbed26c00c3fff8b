"""GSM8K grade-school maths, as the harmful fine-tuning papers prompt and score it.

From ``gsm8k/build_dataset.py`` and ``gsm8k/pred_eval.py`` in GitHub ``git-disl/Lisa`` and
``git-disl/Booster`` (and ``git-disl/Vaccine``):

- instruction: the question, followed by ``QUESTION_PROMPT``. Lisa and Booster use an empty one (the
  default here); Vaccine appends ``"\\nFirst think step by step and then answer the final number.\\n"``
  (option ``step_by_step=true``, for evaluation and training alike);
- no input;
- output (gold): GSM8K's answer with ``####`` replaced by ``The final answer is: `` (so the final line
  reads ``The final answer is:  18``, with the answer's own space kept).

The papers evaluate the first 1,000 of the 1,319 test questions (Lisa, Booster; Vaccine the first
500): that is the default here (``rows=all`` for all of them). The ``accuracy`` judge compares the
final numbers (``score_gsm8k`` and ``final_number`` below).

Data: a folder with ``test.jsonl`` / ``train.jsonl`` (GitHub ``openai/grade-school-math``, fields
``question`` and ``answer``), or the Hub dataset ``openai/gsm8k`` (``main/test-*.parquet``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vlguard.benchmarks.base import BenchmarkData
from vlguard.benchmarks.tasks import (
    BadReference,
    MatchMode,
    TaskItem,
    TaskRecord,
    TaskScore,
    TaskSpec,
    load_task_benchmark,
    read_by_suffix,
    text_field,
)
from vlguard.errors import ConfigError, Problem

ANSWER_PROMPT = "The final answer is: "
STEP_BY_STEP_PROMPT = "\nFirst think step by step and then answer the final number.\n"
ANSWER_MARKER = "####"
# The papers' number pattern: an optional minus, digits, an optional point and decimals.
_NUMBER = re.compile(r"-?\d+\.?\d*")


def question_prompt(options: Mapping[str, Any]) -> str:
    """What follows the question: nothing (Lisa, Booster), or Vaccine's step-by-step request."""
    step_by_step = options.get("step_by_step", False)
    if not isinstance(step_by_step, bool):
        raise ConfigError(
            f"benchmark 'gsm8k': option step_by_step must be true or false, not {step_by_step!r}"
        )
    return STEP_BY_STEP_PROMPT if step_by_step else ""


def read_gsm8k(
    records: Sequence[TaskRecord], file: str, options: Mapping[str, Any]
) -> tuple[list[TaskItem], list[Problem]]:
    """GSM8K items from records with ``question`` and ``answer`` (the answer must hold ``####``)."""
    suffix = question_prompt(options)
    items: list[TaskItem] = []
    problems: list[Problem] = []
    for record in records:
        row_problems: list[Problem] = []
        question = text_field(record, ("question",), file, row_problems)
        answer = text_field(record, ("answer",), file, row_problems)
        if answer is not None and ANSWER_MARKER not in answer:
            row_problems.append(
                Problem(file, record.where, "answer", f"has no {ANSWER_MARKER} before the final answer")
            )
        if row_problems or question is None or answer is None:
            problems.extend(row_problems)
            continue
        output = answer.replace(ANSWER_MARKER, ANSWER_PROMPT)
        items.append(TaskItem(record.index, f"{question}{suffix}", None, output))
    return items, problems


SPEC = TaskSpec(
    name="gsm8k",
    eval_split="test",
    local_files={"test": ("test.jsonl",), "train": ("train.jsonl",)},
    hub_repo="openai/gsm8k",
    hub_files={"test": "main/test-00000-of-00001.parquet", "train": "main/train-00000-of-00001.parquet"},
    load_records=read_by_suffix,
    read=read_gsm8k,
    options=frozenset({"step_by_step"}),
    default_rows=1000,
    published_rows=1319,
    where_to_get="openai/grade-school-math (test.jsonl / train.jsonl with question and answer), or the Hub dataset openai/gsm8k",
    citations=(
        "git-disl/Booster gsm8k/pred_eval.py",
        "git-disl/Lisa gsm8k/build_dataset.py",
        "git-disl/Vaccine gsm8k/build_dataset.py",
    ),
)


def load_gsm8k(data: str | Path | None = None, revision: str | None = None, **options: Any) -> BenchmarkData:
    """GSM8K test questions 0-999 (the papers'); options: ``rows``, ``step_by_step`` (Vaccine's prompt)."""
    return load_task_benchmark(SPEC, data, revision, **options)


def final_number(text: str) -> tuple[float | None, str]:
    """The final number of a GSM8K answer and the rule that found it (None: the text has no number).

    After removing thousands separators: the first number after ``The final answer is: `` when the
    text has it (the papers' rule), else the first number after ``####`` (GSM8K's own marker; an
    addition to the papers, which would take the last number there), else the last number.
    """
    text = text.replace(",", "")
    for marker, rule in ((ANSWER_PROMPT, "answer_prompt"), (ANSWER_MARKER, "answer_marker")):
        parts = text.split(marker)
        if len(parts) > 1:
            # the papers look between the first and the second marker only
            found = _NUMBER.findall(parts[1])
            if found:
                return float(found[0]), rule
    numbers = _NUMBER.findall(text)
    if not numbers:
        return None, "no_number"
    return float(numbers[-1]), "last_number"


def score_gsm8k(response: str, gold: str, match: MatchMode) -> TaskScore:
    """A maths answer against the gold answer: their final numbers must be equal (as floats); no number
    at all never equals a gold number. ``match`` does not apply."""
    gold_number, _ = final_number(gold)
    if gold_number is None or not math.isfinite(gold_number):
        raise BadReference("gold answer has no final number")
    answer, rule = final_number(response)
    return TaskScore(answer is not None and answer == gold_number, answer, gold_number, rule)
