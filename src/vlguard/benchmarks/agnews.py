"""AG News topic classification, as the harmful fine-tuning papers prompt and score it.

Instruction, input and output are those of ``agnews/build_dataset.py`` and ``agnews/pred_eval.py`` in
GitHub ``git-disl/Lisa`` and ``git-disl/Booster`` (``ag_news/...`` in ``git-disl/Vaccine``; the same
strings in all three):

- instruction: ``Categorize the news article given in the input into one of the 4 categories:``
  followed by the four class names, one per line (the exact string is ``AGNEWS_INSTRUCTION``);
- input: the Hugging Face ``ag_news`` ``text``, i.e. the title, a space and the description;
- output (gold): ``World``, ``Sports``, ``Business`` or ``Sci/Tech`` (class index 1-4 of the CSV).

The papers evaluate the first 1,000 rows of the test split (Lisa, Booster; Vaccine the first 500),
so that is the default here (``rows=all`` for all 7,600). Scoring is the ``accuracy`` judge's.

Data: a folder with the original archive's ``test.csv`` (and ``train.csv`` when present; no header,
columns class index, title, description), or the Hub dataset ``fancyzhx/ag_news``
(``data/test-*.parquet``, ``data/train-*.parquet``; ``text`` and a 0-3 ``label``). A folder without
``train.csv`` can still give training examples with ``split="holdout"``: rows 1,000 on of
``test.csv``, which the default evaluation never uses.
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
    read_headerless_csv,
    score_class,
    text_field,
)
from vlguard.errors import Problem

AGNEWS_INSTRUCTION = "Categorize the news article given in the input into one of the 4 categories:\n\nWorld\nSports\nBusiness\nSci/Tech\n"
AGNEWS_CLASSES = ("World", "Sports", "Business", "Sci/Tech")
# Gold class -> the response forms the papers accept for it (their label1 / label2).
AGNEWS_FORMS: dict[str, tuple[str, ...]] = {
    "World": ("World", "world"),
    "Sports": ("Sports", "sports"),
    "Business": ("Business", "business"),
    "Sci/Tech": ("Sci/Tech", "sci"),
}
CSV_COLUMNS = ("class index", "title", "description")
# The papers evaluate test rows 0-999; training examples drawn from the test file start after them.
PAPERS_TEST_ROWS = 1000


def read_agnews_file(path: Path) -> list[TaskRecord]:
    """The original archive's headerless CSV, or a Hub Parquet / JSON Lines file."""
    if path.suffix.lower() == ".csv":
        return read_headerless_csv(path, CSV_COLUMNS)
    return read_by_suffix(path)


def read_agnews(
    records: Sequence[TaskRecord], file: str, options: Mapping[str, Any]
) -> tuple[list[TaskItem], list[Problem]]:
    """AG News items: from CSV rows (class index 1-4, title, description) or Hub rows (text, label 0-3)."""
    items: list[TaskItem] = []
    problems: list[Problem] = []
    for record in records:
        row_problems: list[Problem] = []
        if "class index" in record.fields:
            label = label_field(
                record, "class index", dict(enumerate(AGNEWS_CLASSES, start=1)), file, row_problems
            )
            title = text_field(record, ("title",), file, row_problems)
            description = text_field(record, ("description",), file, row_problems)
            # The Hub's ag_news builds its text exactly so: title, one space, description (unstripped).
            text = None if title is None or description is None else f"{title} {description}"
        else:
            label = label_field(record, "label", dict(enumerate(AGNEWS_CLASSES)), file, row_problems)
            text = text_field(record, ("text",), file, row_problems)
        if row_problems or label is None or text is None:
            problems.extend(row_problems)
            continue
        items.append(TaskItem(record.index, AGNEWS_INSTRUCTION, text, label, category=label))
    return items, problems


SPEC = TaskSpec(
    name="agnews",
    eval_split="test",
    local_files={"test": ("test.csv",), "train": ("train.csv",)},
    hub_repo="fancyzhx/ag_news",
    hub_files={"test": "data/test-00000-of-00001.parquet", "train": "data/train-00000-of-00001.parquet"},
    load_records=read_agnews_file,
    read=read_agnews,
    default_rows=PAPERS_TEST_ROWS,
    published_rows=7600,
    holdout_start=PAPERS_TEST_ROWS,
    where_to_get="the AG News archive (test.csv / train.csv: class index, title, description), or the Hub dataset fancyzhx/ag_news",
    citations=("git-disl/Booster agnews/pred_eval.py", "git-disl/Lisa agnews/build_dataset.py"),
)


def load_agnews(data: str | Path | None = None, revision: str | None = None, **options: Any) -> BenchmarkData:
    """AG News test rows 0-999 (the papers'); options: ``rows`` (see ``load_task_benchmark``)."""
    return load_task_benchmark(SPEC, data, revision, **options)


def score_agnews(response: str, gold: str, match: MatchMode) -> TaskScore:
    """An AG News answer against the gold class: ``World`` / ``world``, ``Sports`` / ``sports``,
    ``Business`` / ``business``, ``Sci/Tech`` / ``sci`` (exact, or contained with ``match="contains"``)."""
    return score_class(AGNEWS_FORMS, response, gold, match)
