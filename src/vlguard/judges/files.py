"""Judge any JSONL file of responses: ``{"id", "prompt", "response"[, "image", "reference", "subset"]}``.

Used by ``vlguard judge --input FILE --output OUT``: the judge runs on responses that did not come from a
vlguard run (another tool's outputs, human-labelled sets). Every input line is validated first; a bad
line is a ``DataValidationError`` naming the file, the line number and the field.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from vlguard.data.images import unsafe_path_reason
from vlguard.data.jsonio import read_jsonl_lines
from vlguard.errors import DataValidationError, Problem
from vlguard.fileio import check_output_file
from vlguard.judges.base import Judge, JudgeInput

_REQUIRED = ("id", "prompt", "response")
_OPTIONAL = ("image", "reference", "subset")


def read_judge_inputs(input_path: str | os.PathLike[str]) -> list[JudgeInput]:
    """Read and validate a JSONL file of responses; all problems are reported at once.

    An ``image`` path is relative to the input file's folder and may not leave it (no absolute paths,
    no ``..``).
    """
    path = Path(input_path)
    if not path.is_file():
        raise DataValidationError([Problem(str(path), "", "", "file not found")])
    problems: list[Problem] = []
    items: list[JudgeInput] = []
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
            )
        )
    if problems:
        raise DataValidationError(problems, hint="each line needs string fields id, prompt and response")
    return items


def judge_jsonl(
    judge: Judge,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    batch_size: int = 64,
) -> int:
    """Judge every record of ``input_path``; write ``{"id", "label", "evidence"}`` lines to ``output_path``.

    Validates the whole input before judging anything. Writes in batches (flushed) to a temporary file
    renamed into place at the end, so a crash never leaves a truncated output. Returns the record count.
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
                        "label": judgment.label,
                        "evidence": judgment.evidence,
                    }
                    handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                handle.flush()
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no partial output left behind to be mistaken for a result
        raise
    return len(items)
