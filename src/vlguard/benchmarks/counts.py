"""Published counts: a benchmark file with another number of records than its publication is an error.

Each loader reports what it read of every published file it used (``BenchmarkData.counts``, one
``Count`` per file and kind of record, counted before options select rows); the published numbers are
facts of the benchmark's module (``PUBLISHED_COUNTS`` there: file or split → kind of record → number).
``check_counts`` is the one check, applied when a benchmark is loaded through its registry entry
(``load_benchmark``, ``vlguard eval``): a short or truncated file stops the run with the file, the
expected and the found count. ``allow_partial=true`` (CLI: ``--bench-option allow_partial=true``)
runs it anyway; the run's manifest (``benchmark_source.partial``), ``metrics.json`` (``run.partial``)
and the report then say which file was short and by how much.

A file of the same format under another name is the user's own data set (a test fixture, a curated
subset): its counts are recorded, not checked.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

from vlguard.benchmarks.base import BenchmarkData, Count
from vlguard.errors import ConfigError, DataValidationError, Problem

logger = logging.getLogger(__name__)

# The loader option that runs a benchmark whose files hold fewer records than published.
ALLOW_PARTIAL = "allow_partial"

# file or split -> kind of record -> published number
PublishedCounts = Mapping[str, Mapping[str, int]]


def file_count(
    path: str | Path, what: str, found: int, published: PublishedCounts, *, part: str | None = None
) -> Count:
    """The count of ``what`` read from ``path``, checked against ``published[part][what]``.

    ``part`` is the published file or split that ``path`` holds (default: the file's own name, so a file
    renamed by the user is not checked: it is their own data).
    """
    name = Path(path).name if part is None else part
    return Count(
        part=name, file=str(path), what=what, found=found, expected=published.get(name, {}).get(what)
    )


def allow_partial_option(value: object) -> bool:
    """The ``allow_partial`` option as a bool (``true`` / ``false``); ``ConfigError`` otherwise."""
    if isinstance(value, bool):
        return value
    raise ConfigError(f"benchmark option {ALLOW_PARTIAL} must be true or false, not {value!r}")


def shortfall(count: Count) -> str:
    """One line: what a short (or long) file holds against its publication."""
    return f"{count.found:,} {count.what}, the published {count.part} has {count.expected:,}"


def check_counts(name: str, data: BenchmarkData, *, allow_partial: bool) -> BenchmarkData:
    """``data`` with its counts recorded in its source; ``DataValidationError`` when a published file holds
    another number of records than published, unless ``allow_partial`` (then recorded as ``partial``).
    """
    if not data.counts:
        return data
    source = {**data.source, "counts": [c.to_dict() for c in data.counts]}
    short = [c for c in data.counts if c.short]
    if short and not allow_partial:
        raise DataValidationError(
            [Problem(c.file, "", "", shortfall(c)) for c in short],
            hint=(
                f"benchmark {name!r}: the file is cut short, or another version than the published one. Give "
                f"the complete file, or run it anyway with --bench-option {ALLOW_PARTIAL}=true (the run "
                "then says, in metrics.json and in the report, that it covers part of the benchmark)."
            ),
        )
    if short:
        for count in short:
            logger.warning(
                "benchmark %s: %s (%s); running it anyway (%s)",
                name,
                shortfall(count),
                count.file,
                ALLOW_PARTIAL,
            )
        source["partial"] = [c.to_dict() for c in short]
    return dataclasses.replace(data, source=source)
