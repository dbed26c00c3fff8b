"""SST-2 sentiment (GLUE), as the harmful fine-tuning papers prompt and score it.

Instruction, input and output are those of ``sst2/build_dataset.py`` (training) and
``sst2/pred_eval.py`` (evaluation) in GitHub ``git-disl/Vaccine``, ``git-disl/Lisa`` and
``git-disl/Booster`` (the same strings in all three):

- instruction: ``Analyze the sentiment of the input, and respond only positive or negative``;
- input: the sentence; output (gold): ``negative`` (label 0) or ``positive`` (label 1);
- scoring (``score_sst2``, ``pred_eval.py``): the answer is one of ``positive`` / ``Positive`` or
  ``negative`` / ``Negative`` for the gold class (``match="exact"``, Lisa and Booster), or contains one
  (``match="contains"``, Vaccine).

The papers report accuracy on GLUE's validation split (872 sentences; their ``pred_eval.py`` takes
the first 1,000 rows, i.e. all of them, in Lisa and Booster; Vaccine takes the first 500), which the
GLUE files call ``dev.tsv``. The ``accuracy`` judge applies ``score_sst2`` (below).

Data: a folder with GLUE's ``dev.tsv`` / ``train.tsv`` (header row; a ``label`` column and the
sentence as ``sentence``, or ``content`` as in some public copies), or the Hub dataset
``nyu-mll/glue`` (``sst2/validation-*.parquet``, ``sst2/train-*.parquet``). Sample ids are
``sst2:dev:<0-based row of the file>``: the local copy's rows are not in GLUE's order, so ids of a
local and a Hub run differ, but the set of sentences is the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vlguard.benchmarks.base import BenchmarkData
from vlguard.benchmarks.tasks import (
    MatchMode,
    TaskItem,
    TaskRecord,
    TaskScore,
    TaskSpec,
    label_field,
    load_task_benchmark,
    read_by_suffix,
    score_class,
    text_field,
)
from vlguard.errors import Problem

SST2_INSTRUCTION = "Analyze the sentiment of the input, and respond only positive or negative"
SST2_LABELS = {0: "negative", 1: "positive"}
SENTENCE_COLUMNS = ("sentence", "content")
# Gold class -> the response forms the papers accept for it (their label1 / label2).
SST2_FORMS: dict[str, tuple[str, ...]] = {
    "positive": ("positive", "Positive"),
    "negative": ("negative", "Negative"),
}


def read_sst2(
    records: Sequence[TaskRecord], file: str, options: Mapping[str, Any]
) -> tuple[list[TaskItem], list[Problem]]:
    """SST-2 items from the rows of a GLUE file (``label``, ``sentence`` or ``content``)."""
    items: list[TaskItem] = []
    problems: list[Problem] = []
    for record in records:
        row_problems: list[Problem] = []
        sentence = text_field(record, SENTENCE_COLUMNS, file, row_problems)
        label = label_field(record, "label", SST2_LABELS, file, row_problems)
        if row_problems or sentence is None or label is None:
            problems.extend(row_problems)
            continue
        items.append(TaskItem(record.index, SST2_INSTRUCTION, sentence, label, category=label))
    return items, problems


SPEC = TaskSpec(
    name="sst2",
    eval_split="dev",
    local_files={"dev": ("dev.tsv",), "train": ("train.tsv",)},
    hub_repo="nyu-mll/glue",
    hub_files={"dev": "sst2/validation-00000-of-00001.parquet", "train": "sst2/train-00000-of-00001.parquet"},
    load_records=read_by_suffix,
    read=read_sst2,
    default_rows=None,  # all 872 (the papers' first 1,000)
    published_rows=872,
    where_to_get="GLUE SST-2 (dev.tsv / train.tsv with columns label and sentence), or the Hub dataset nyu-mll/glue",
    citations=(
        "git-disl/Booster sst2/pred_eval.py",
        "git-disl/Lisa sst2/pred_eval.py",
        "git-disl/Vaccine sst2/build_dataset.py",
    ),
)


def load_sst2(data: str | Path | None = None, revision: str | None = None, **options: Any) -> BenchmarkData:
    """SST-2's validation split (``dev.tsv``, 872 sentences); options: ``rows`` (see ``load_task_benchmark``)."""
    return load_task_benchmark(SPEC, data, revision, **options)


def score_sst2(response: str, gold: str, match: MatchMode) -> TaskScore:
    """An SST-2 answer against the gold class (see the module docstring)."""
    return score_class(SST2_FORMS, response, gold, match)
