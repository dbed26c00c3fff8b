"""Reading and writing JSON / JSONL data files, with user-facing errors instead of tracebacks.

Parsing goes through ``vlguard.fileio.parse_json`` (depth limit, no lone surrogates) and writing
through ``vlguard.fileio.atomic_write_text`` (temporary file + rename, stale temporary files removed).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlguard.errors import DataValidationError, Problem
from vlguard.fileio import JsonError, atomic_write_text, json_problem, parse_json, read_text


def read_json(path: str | Path) -> Any:
    """Parse a UTF-8 JSON file; ``DataValidationError`` naming the file, line and column (or record and field) otherwise."""
    path = Path(path)
    try:
        return parse_json(read_text(path))
    except JsonError as err:
        raise DataValidationError([json_problem(err, path)]) from None


def read_jsonl_lines(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, value) of every non-blank line of a UTF-8 JSON Lines file.

    Every bad line is listed in one ``DataValidationError`` (record ``line N``, the field when a value
    inside the line is bad).
    """
    path = Path(path)
    rows: list[tuple[int, Any]] = []
    problems: list[Problem] = []
    # Lines end at "\n" only: str.splitlines would also cut at U+2028, U+0085 or a form feed, which JSON
    # allows raw inside a string (json.dumps(ensure_ascii=False) writes them so).
    for number, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, parse_json(line)))
        except JsonError as err:
            if err.line is not None:  # a syntax error: the line is the record, its column says where
                message = f"not valid JSON: {err.message} at column {err.column}"
                problems.append(Problem(str(path), f"line {number}", "", message))
            else:
                problems.append(json_problem(err, path, f"line {number}"))
    if problems:
        raise DataValidationError(problems)
    return rows


def read_jsonl(path: str | Path) -> list[Any]:
    """Parse a UTF-8 JSON Lines file (blank lines ignored); every bad line is listed in the error."""
    return [value for _, value in read_jsonl_lines(path)]


def read_json_or_jsonl(path: str | Path) -> list[Any]:
    """A list of rows from a ``.jsonl`` file, or from a ``.json`` file holding a list."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_jsonl(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise DataValidationError(
            [Problem(str(path), "", "", f"expected a JSON list of records, got {type(data).__name__}")]
        )
    return data


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write one JSON object per line (UTF-8, written to a temporary file then renamed into place)."""
    return atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def write_json(data: Any, path: str | Path) -> Path:
    """Write indented JSON (UTF-8, atomically)."""
    return atomic_write_text(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")
