"""Reading and writing JSON / JSONL files, with user-facing errors instead of tracebacks."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlguard.errors import DataValidationError, Problem


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataValidationError(
            [Problem(str(path), "", "", f"cannot read the file: {err.strerror or err}")]
        ) from err
    try:
        # utf-8-sig: a byte-order mark (common from Windows editors) is not a reason to refuse a file.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        bad = data[err.start : err.start + 1].hex()
        raise DataValidationError(
            [
                Problem(
                    str(path),
                    "",
                    "",
                    f"not UTF-8 text: byte 0x{bad} at offset {err.start} (save the file as UTF-8)",
                )
            ]
        ) from err


def read_json(path: str | Path) -> Any:
    """Parse a UTF-8 JSON file; ``DataValidationError`` naming the file, line and column otherwise."""
    path = Path(path)
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataValidationError(
            [Problem(str(path), "", "", f"not valid JSON: {err.msg} at line {err.lineno} column {err.colno}")]
        ) from err


def read_jsonl(path: str | Path) -> list[Any]:
    """Parse a UTF-8 JSON Lines file (blank lines ignored); every bad line is listed in the error."""
    return [row for _, row in read_jsonl_lines(path)]


def read_jsonl_lines(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, value) of every non-blank line of a UTF-8 JSON Lines file; bad lines are all listed."""
    path = Path(path)
    rows: list[tuple[int, Any]] = []
    problems: list[Problem] = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            problems.append(
                Problem(str(path), f"line {number}", "", f"not valid JSON: {err.msg} at column {err.colno}")
            )
    if problems:
        raise DataValidationError(problems)
    return rows


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


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write one JSON object per line (UTF-8, written to a temporary file then renamed into place)."""
    path = Path(path)
    _atomic_write(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    return path


def write_json(data: Any, path: str | Path) -> Path:
    """Write indented JSON (UTF-8, atomically)."""
    path = Path(path)
    _atomic_write(path, json.dumps(data, ensure_ascii=False, indent=2) + "\n")
    return path
