"""AlpacaEval: 805 open instructions; helpfulness is the win rate against reference answers.

The instructions and the reference answers are AlpacaEval 2's: GPT-4 Turbo's (``gpt4_1106_preview``)
outputs, the baseline of AlpacaEval 2. The default judge is the pairwise ``llm-judge``: each response
is compared with the reference answer (A/B order drawn per sample), and ``helpfulness_win_rate`` is
the share of wins. Samples: subset ``alpaca-eval``, no input, ``reference`` = the GPT-4 Turbo answer,
category = the instruction's origin (``helpful_base``, ``koala``, ``oasst``, ``selfinstruct``,
``vicuna``).

The harmful fine-tuning papers (``alpaca/pred_eval.py`` in GitHub ``git-disl/Vaccine`` and
``git-disl/Booster``) generate for the instructions with index above 700 only (the last 104): option
``rows="701:"`` selects the same ones. Their win rate comes from the ``alpaca_eval`` tool's own
annotator, so it is not the same number as this judge's.

Data: a folder or file with the reference outputs as a JSON list with ``instruction`` and
``output`` (the Hub dataset ``tatsu-lab/alpaca_eval``'s ``alpaca_eval_gpt4_baseline.json``, the
default source) or ``reference_output`` (the ``results/gpt4_1106_preview`` copy in GitHub
``tatsu-lab/alpaca_eval``), plus ``dataset``.

AlpacaEval as the user's task of a harmful fine-tuning experiment (``vlguard hft task.name=alpaca-eval``):
Vaccine fine-tunes on Alpaca data (``--benign_dataset data/alpaca.json``, ``script/sft_finetune/alpaca.sh``)
and measures the win rate on AlpacaEval. The ``train`` split is Alpaca-format data (a JSON list of
``instruction``, ``input``, ``output``: Stanford Alpaca's ``alpaca_data.json``) in a local folder; it
has no Hub file here (its instructions are not AlpacaEval's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vlguard.benchmarks.base import BenchmarkData
from vlguard.benchmarks.tasks import (
    TaskItem,
    TaskRecord,
    TaskSpec,
    load_task_benchmark,
    read_by_suffix,
    text_field,
)
from vlguard.errors import Problem

LOCAL_FILES = ("alpaca_eval_gpt4_1106_preview.json", "alpaca_eval_gpt4_baseline.json", "model_outputs.json")
# Alpaca-format training data: Stanford Alpaca's file, Vaccine's copy of it (data/alpaca.json).
TRAIN_FILES = ("alpaca_data.json", "alpaca.json", "alpaca_data_cleaned.json")


def read_alpaca_eval(
    records: Sequence[TaskRecord], file: str, options: Mapping[str, Any]
) -> tuple[list[TaskItem], list[Problem]]:
    """AlpacaEval items: ``instruction``, the reference answer (``output`` or ``reference_output``), ``dataset``;
    Alpaca training rows also have an ``input`` (empty when the instruction is the whole request)."""
    items: list[TaskItem] = []
    problems: list[Problem] = []
    for record in records:
        row_problems: list[Problem] = []
        instruction = text_field(record, ("instruction",), file, row_problems)
        reference = text_field(record, ("output", "reference_output"), file, row_problems, strip=True)
        origin = record.fields.get("dataset")
        task_input = record.fields.get("input")
        for name, value in (("dataset", origin), ("input", task_input)):
            if value is not None and not isinstance(value, str):
                row_problems.append(
                    Problem(file, record.where, name, f"must be text, not {type(value).__name__}")
                )
        if row_problems or instruction is None or reference is None:
            problems.extend(row_problems)
            continue
        items.append(
            TaskItem(record.index, instruction, task_input or None, reference, category=origin or None)
        )
    return items, problems


SPEC = TaskSpec(
    name="alpaca-eval",
    eval_split="eval",
    local_files={"eval": LOCAL_FILES, "train": TRAIN_FILES},
    hub_repo="tatsu-lab/alpaca_eval",
    hub_files={"eval": "alpaca_eval_gpt4_baseline.json"},
    load_records=read_by_suffix,
    read=read_alpaca_eval,
    default_rows=None,
    published_rows=805,
    where_to_get="AlpacaEval 2's reference outputs (instruction, output, dataset), e.g. the Hub dataset "
    "tatsu-lab/alpaca_eval (alpaca_eval_gpt4_baseline.json); for training, a folder with Stanford Alpaca's "
    "alpaca_data.json (instruction, input, output)",
    citations=("git-disl/Booster alpaca/pred_eval.py", "git-disl/Vaccine alpaca/pred_eval.py"),
)


def load_alpaca_eval(
    data: str | Path | None = None, revision: str | None = None, **options: Any
) -> BenchmarkData:
    """AlpacaEval's 805 instructions with GPT-4 Turbo reference answers; options: ``rows``."""
    return load_task_benchmark(SPEC, data, revision, **options)
