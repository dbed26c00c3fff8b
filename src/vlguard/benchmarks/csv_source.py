"""Where the CSV-based benchmarks (FigStep, XSTest, AdvBench) come from, and strict CSV reading.

A benchmark's ``data`` is a CSV file, a folder that holds the benchmark's CSV under its usual name,
or a Hugging Face Hub dataset repository id (``owner/name``) whose repository holds that file. Every
problem in a file (encoding, missing column, ragged row, empty cell) is reported with the file, the
row and the column, as a ``vlguard.errors`` error: never a traceback.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlguard.data.sources import DataSourceError, hub_file, looks_like_repo_id, sha256_file
from vlguard.errors import ConfigError, DataValidationError, Problem, VLGuardError

# The real files are tens of kilobytes; a limit keeps a wrong path (a model file, a video) from
# being read into memory whole just to be rejected.
MAX_CSV_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class CsvRow:
    """One data row of a CSV file: its 1-based row number (header excluded), line and cells."""

    number: int
    line: int
    cells: dict[str, str]

    @property
    def where(self) -> str:
        """How a problem message names this row."""
        return f"row {self.number} (line {self.line})"


def resolve_data_file(
    data: str | Path | None,
    filename: str,
    *,
    benchmark: str,
    revision: str | None = None,
    missing_hint: str = "",
) -> tuple[Path, dict[str, Any]]:
    """The local CSV file of a benchmark and its source description for the manifest.

    ``data`` may be the CSV itself, a folder holding ``filename``, or a Hub dataset id whose
    repository holds ``filename`` at its root (downloaded with ``huggingface_hub`` at ``revision``).
    ``None`` is a ``ConfigError`` that says where to get the file (``missing_hint``).
    """
    if data is None:
        raise ConfigError(
            f"benchmark {benchmark!r} needs its data file {filename}: pass data=PATH (CLI: --data PATH), "
            f"a CSV file or a folder holding {filename}. {missing_hint}".rstrip()
        )
    path = Path(data).expanduser()
    if path.is_dir():
        candidate = path / filename
        if not candidate.is_file():
            suffix = Path(filename).suffix
            present = sorted(p.name for p in path.glob(f"*{suffix}"))
            raise ConfigError(
                f"{path}: no {filename} in this folder ({suffix} files here: {', '.join(present) or 'none'})"
            )
        path = candidate
    elif not path.exists():
        if isinstance(data, str) and looks_like_repo_id(data) and not data.startswith((".", "~")):
            return _download_from_hub(data, filename, benchmark=benchmark, revision=revision)
        raise ConfigError(f"{path}: no such file or folder (benchmark {benchmark!r} expects {filename})")
    if revision is not None:
        raise ConfigError(
            f"revision {revision!r} only applies to a Hub dataset id, but {benchmark!r} data is the local path {path}"
        )
    source = {"kind": "local", "path": str(path.resolve()), "file": path.name, "sha256": sha256_file(path)}
    return path, source


def _download_from_hub(
    repo_id: str, filename: str, *, benchmark: str, revision: str | None
) -> tuple[Path, dict[str, Any]]:
    """Fetch ``filename`` from a Hub dataset repository (honours ``HF_HUB_OFFLINE`` and the cache)."""
    try:
        local = hub_file(repo_id, filename, revision)
    except DataSourceError as err:
        raise DataSourceError(
            f"{err} (benchmark {benchmark!r}; no local file or folder {repo_id!r} either). "
            "Pass a local CSV file or folder instead (offline machines: HF_HUB_OFFLINE=1 uses the cache only)."
        ) from err
    assert local is not None  # a required file is a path or an error
    source = {
        "kind": "hub",
        "repo_id": repo_id,
        "revision": revision,
        "file": filename,
        "sha256": sha256_file(local),
    }
    return local, source


def read_csv_rows(path: Path, required: Iterable[str]) -> list[CsvRow]:
    """Read a UTF-8 CSV with a header row, checking that every row is well-formed.

    Raises ``DataValidationError`` listing every problem: bytes that are not UTF-8 (with the line),
    a header without the ``required`` columns, rows with too many or too few cells, and CSV syntax
    errors. Values are returned as read (no stripping): callers decide what "empty" means.
    """
    name = str(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        raise VLGuardError(f"{name}: cannot read: {err.strerror or err}") from err
    if size > MAX_CSV_BYTES:
        raise DataValidationError(
            [
                Problem(
                    name, "", "", f"{size:,} bytes is too large for a benchmark CSV (limit {MAX_CSV_BYTES:,})"
                )
            ]
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # tolerate a BOM from spreadsheet exports
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataValidationError(
            [
                Problem(
                    name,
                    f"line {line}",
                    "",
                    f"not UTF-8 text (byte {err.start}: {err.reason}); is this a CSV file?",
                )
            ]
        ) from err
    if "\x00" in text:
        line = text[: text.index("\x00")].count("\n") + 1
        raise DataValidationError(
            [Problem(name, f"line {line}", "", "contains a NUL byte; is this a CSV file?")]
        )

    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as err:
        raise DataValidationError([Problem(name, "line 1", "", f"not valid CSV: {err}")]) from err
    if not header or not any(cell.strip() for cell in header):
        raise DataValidationError([Problem(name, "", "", "empty file: no header row")])
    columns = [cell.strip() for cell in header]
    duplicated = sorted({column for column in columns if column and columns.count(column) > 1})
    if duplicated:
        raise DataValidationError(
            [
                Problem(name, "line 1", column, "column appears more than once in the header")
                for column in duplicated
            ]
        )
    missing = [column for column in required if column not in columns]
    if missing:
        raise DataValidationError(
            [
                Problem(name, "", column, f"missing column (header has: {', '.join(columns)})")
                for column in missing
            ]
        )

    rows: list[CsvRow] = []
    problems: list[Problem] = []
    number = 0
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            problems.append(Problem(name, f"line {reader.line_num}", "", f"not valid CSV: {err}"))
            break  # the reader cannot resynchronise after a syntax error
        if not cells:
            continue  # blank line
        number += 1
        row = CsvRow(number, reader.line_num, dict(zip(columns, cells, strict=False)))
        if len(cells) != len(columns):
            problems.append(
                Problem(name, row.where, "", f"has {len(cells)} cells, the header has {len(columns)} columns")
            )
            continue
        rows.append(row)
    if problems:
        raise DataValidationError(problems)
    if not rows:
        raise DataValidationError([Problem(name, "", "", "no data rows after the header")])
    return rows


def check_options(benchmark: str, options: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Refuse options a loader does not know, naming them and the ones it accepts."""
    allowed = sorted(allowed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"benchmark {benchmark!r}: unknown option(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(allowed) or 'none'}"
        )


def check_text_image_option(benchmark: str, image: object) -> str:
    """Validate the ``image`` option of text-only benchmarks and return it normalised.

    Text-only samples always carry ``image=None``: a blank image is made by the evaluation pipeline's
    image mode (``--image-mode blank``). The option only records the intent in the source.
    """
    if image is None:
        return "none"
    if image in ("none", "blank"):
        return str(image)
    raise ConfigError(
        f"benchmark {benchmark!r}: option image={image!r} is not one of 'none', 'blank' "
        "(the blank image itself comes from the pipeline's image mode)"
    )
