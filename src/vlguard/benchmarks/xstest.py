"""XSTest v2 (exaggerated safety): 250 safe prompts that only sound unsafe, 200 unsafe contrasts.

Source file ``xstest_prompts.csv`` (GitHub ``paul-rottger/exaggerated-safety``; columns ``id``,
``prompt``, ``type``, ``label``, ``focus``, ``note``). A prompt whose ``type`` starts with
``contrast_`` is an unsafe contrast prompt (subset ``xstest_unsafe``, should be refused); every
other prompt is safe (subset ``xstest_safe``, should be answered). The paper reports compliance on
the safe prompts (over-refusal is its complement) and the attack success rate on the unsafe ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlguard.benchmarks.base import BenchmarkData
from vlguard.benchmarks.counts import file_count
from vlguard.benchmarks.csv_source import (
    check_options,
    check_text_image_option,
    read_csv_rows,
    resolve_data_file,
)
from vlguard.errors import DataValidationError, Problem
from vlguard.records import Sample

XSTEST_FILE = "xstest_prompts.csv"
XSTEST_COLUMNS = ("id", "prompt", "type", "label", "focus", "note")
SAFE_SUBSET = "xstest_safe"
UNSAFE_SUBSET = "xstest_unsafe"
# XSTest v2 (Röttger et al. 2024): 250 safe prompts and 200 unsafe contrast prompts.
PUBLISHED_COUNTS = {XSTEST_FILE: {SAFE_SUBSET: 250, UNSAFE_SUBSET: 200}}
_WHERE = "https://github.com/paul-rottger/exaggerated-safety (file xstest_prompts.csv)"


def load_xstest(data: str | Path | None = None, revision: str | None = None, **options: Any) -> BenchmarkData:
    """Load XSTest from ``data`` (the CSV, a folder holding ``xstest_prompts.csv``, or a Hub dataset id).

    Options: ``image`` = ``"none"`` (default) or ``"blank"``. Samples are text only (``image=None``)
    either way; pair them with a blank image through the pipeline's image mode.

    Sample ids are ``xstest-<id>:<subset>`` from the file's own ``id`` column, so they stay stable
    if rows are reordered. The ``label`` column must agree with the ``type`` (``safe`` for plain
    types, ``unsafe`` for ``contrast_*``): a disagreement is reported rather than silently resolved.
    """
    check_options("xstest", options, {"image"})
    image = check_text_image_option("xstest", options.get("image"))
    path, source = resolve_data_file(
        data, XSTEST_FILE, benchmark="xstest", revision=revision, missing_hint=f"Get it from {_WHERE}."
    )
    rows = read_csv_rows(path, ("id", "prompt", "type", "label"))

    problems: list[Problem] = []
    samples: list[Sample] = []
    seen: dict[str, str] = {}
    for row in rows:
        cells = {key: row.cells.get(key, "").strip() for key in XSTEST_COLUMNS}
        row_problems = [
            Problem(str(path), row.where, column, "empty value")
            for column in ("id", "prompt", "type", "label")
            if not cells[column]
        ]
        if cells["id"] and cells["id"] in seen:
            row_problems.append(
                Problem(
                    str(path), row.where, "id", f"duplicate id {cells['id']!r} (first at {seen[cells['id']]})"
                )
            )
        unsafe = cells["type"].startswith("contrast_")
        expected_label = "unsafe" if unsafe else "safe"
        if cells["label"] and cells["label"] != expected_label:
            row_problems.append(
                Problem(
                    str(path),
                    row.where,
                    "label",
                    f"{cells['label']!r} disagrees with type {cells['type']!r} (expected {expected_label!r})",
                )
            )
        if row_problems:
            problems.extend(row_problems)
            continue
        seen[cells["id"]] = row.where
        record_id = f"xstest-{cells['id']}"
        subset = UNSAFE_SUBSET if unsafe else SAFE_SUBSET
        samples.append(
            Sample(
                id=f"{record_id}:{subset}",
                benchmark="xstest",
                subset=subset,
                # The prompt exactly as written (inner whitespace included); only the CSV cell's
                # surrounding whitespace is dropped.
                prompt=row.cells["prompt"].strip(),
                image=None,
                reference=None,
                category=cells["type"],
                subcategory=cells["note"] or None,
                should_refuse=unsafe,
                record_id=record_id,
            )
        )
    if problems:
        raise DataValidationError(problems, hint=f"XSTest expects the columns of {_WHERE}.")
    source.update(benchmark="xstest", image=image, n_samples=len(samples))
    counts = tuple(
        file_count(path, subset, sum(s.subset == subset for s in samples), PUBLISHED_COUNTS)
        for subset in PUBLISHED_COUNTS[XSTEST_FILE]
    )
    return BenchmarkData(name="xstest", samples=tuple(samples), images=None, source=source, counts=counts)
