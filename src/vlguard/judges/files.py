"""Judge any JSONL file of responses: ``{"id", "prompt", "response"[, "image", "reference", "subset", "intent",
"benchmark", "category"]}``.

``intent`` is the request the prompt really carries, when it differs from the prompt (harm judges judge
the response against it).

Used by ``vlguard judge --input FILE --output OUT``: the judge runs on responses that did not come from a
vlguard run (another tool's outputs, human-labelled sets). Every input line is validated first; a bad
line is a ``DataValidationError`` naming the file, the line number and the field.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vlguard.data.images import unsafe_path_reason
from vlguard.data.jsonio import read_jsonl_lines
from vlguard.errors import DataValidationError, Problem
from vlguard.fileio import check_output_file
from vlguard.judges.base import Judge, JudgeInput

_REQUIRED = ("id", "prompt", "response")
_OPTIONAL = ("image", "reference", "subset", "intent", "benchmark", "category")


def read_judge_inputs(input_path: str | os.PathLike[str]) -> list[JudgeInput]:
    """Read and validate a JSONL file of responses; all problems are reported at once.

    An ``image`` path is relative to the input file's folder and may not leave it (no absolute paths,
    no ``..``).
    """
    items, _ = _read_records(Path(input_path), label_field=None, allowed_labels={})
    return items


def read_labelled_inputs(
    input_path: str | os.PathLike[str], label_field: str, allowed_labels: Mapping[Any, str]
) -> tuple[list[JudgeInput], list[str]]:
    """Like ``read_judge_inputs``, plus each line's human label from ``label_field``: a key of
    ``allowed_labels``, returned as the label it maps to (``True`` → ``harmful``, ...).

    A missing or unknown label is a problem reported with the file, the line and the field.
    """
    return _read_records(Path(input_path), label_field=label_field, allowed_labels=allowed_labels)


def _known_label(value: Any, allowed_labels: Mapping[Any, str]) -> bool:
    # a float 1.0 is not a label, and a list or an object cannot even be looked up
    return isinstance(value, (str, bool, int)) and value in allowed_labels


def _read_records(
    path: Path, label_field: str | None, allowed_labels: Mapping[Any, str]
) -> tuple[list[JudgeInput], list[str]]:
    if not path.is_file():
        raise DataValidationError([Problem(str(path), "", "", "file not found")])
    problems: list[Problem] = []
    items: list[JudgeInput] = []
    labels: list[str] = []
    seen: set[str] = set()
    try:
        lines = read_jsonl_lines(path)  # UTF-8, JSON syntax, nesting and surrogates, every bad line listed
    except DataValidationError as err:
        raise DataValidationError(err.problems, hint="each line must be one JSON object") from None
    for line_no, record in lines:
        where = f"line {line_no}"
        if not isinstance(record, dict):
            problems.append(Problem(str(path), where, "", "each line must be a JSON object"))
            continue
        bad = False
        for field in _REQUIRED:
            if field not in record:
                problems.append(Problem(str(path), where, field, "missing required field"))
                bad = True
            elif not isinstance(record[field], str):
                problems.append(
                    Problem(str(path), where, field, f"must be a string, not {type(record[field]).__name__}")
                )
                bad = True
        for field in _OPTIONAL:
            if record.get(field) is not None and not isinstance(record[field], str):
                problems.append(
                    Problem(str(path), where, field, f"must be a string, not {type(record[field]).__name__}")
                )
                bad = True
        if label_field is not None:
            label = record.get(label_field)
            if not _known_label(label, allowed_labels):
                expected = ", ".join(dict.fromkeys(str(k).lower() for k in allowed_labels))
                message = (
                    "missing human label"
                    if label_field not in record
                    else f"unknown label {label!r} (expected one of {expected})"
                )
                problems.append(Problem(str(path), where, label_field, message))
                bad = True
        image = record.get("image")
        reason = unsafe_path_reason(image) if isinstance(image, str) else None
        if reason is not None:
            # A shared responses file must not make the judge read (and send to its API) files
            # outside the input's folder.
            problems.append(Problem(str(path), where, "image", reason))
            bad = True
        if bad:
            continue
        if record["id"] in seen:
            problems.append(Problem(str(path), where, "id", f"duplicate id {record['id']!r}"))
            continue
        seen.add(record["id"])
        if image is not None:
            image = str(path.parent / image)
        items.append(
            JudgeInput(
                sample_id=record["id"],
                prompt=record["prompt"],
                response=record["response"],
                subset=record.get("subset") or "",
                image=image,
                reference=record.get("reference"),
                intent=record.get("intent"),
                benchmark=record.get("benchmark"),
                category=record.get("category"),
            )
        )
        if label_field is not None:
            labels.append(allowed_labels[record[label_field]])
    if problems:
        hint = "each line needs string fields id, prompt and response"
        if label_field is not None:
            hint += f", and a human label in {label_field!r}"
        raise DataValidationError(problems, hint=hint)
    return items, labels


def judge_jsonl(
    judge: Judge,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    batch_size: int = 64,
) -> int:
    """Judge every record of ``input_path``; write ``{"id", "judge", "label", "evidence"}`` lines to ``output_path``.

    Validates the whole input before judging anything. Writes in batches (flushed) to a temporary file
    renamed into place at the end, so a crash never leaves a truncated output. The judge's ``describe()``
    (version, model, revision, ...) goes to ``<output_path>.judge.json``. Returns the record count.
    """
    out = check_output_file(output_path, "--output file")  # before any judging, not after it
    items = read_judge_inputs(input_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    try:
        with tmp.open("w", encoding="utf-8") as handle:
            for start in range(0, len(items), batch_size):
                for judgment in judge.judge(items[start : start + batch_size]):
                    record = {
                        "id": judgment.sample_id,
                        "judge": judgment.judge,
                        "label": judgment.label,
                        "evidence": judgment.evidence,
                    }
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
        description = out.with_name(out.name + ".judge.json")
        description.write_text(
            json.dumps(judge.describe(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no partial output left behind to be mistaken for a result
        raise
    return len(items)
