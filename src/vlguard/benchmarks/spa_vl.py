"""SPA-VL HarmEval: the 265 harmful image-question pairs of SPA-VL's test split (Zhang et al., 2024).

Source: the Hub dataset ``sqrti/SPA-VL`` (CC BY 4.0), config ``test``, split ``harm``: the parquet file
``test/harm-*.parquet`` with the columns ``image`` (encoded bytes), ``question``, ``class1``, ``class2``,
``class3`` (the harm taxonomy, coarse to fine). The Hub's parquet branch (``refs/convert/parquet``) holds
the same split as ``test/harm/0000.parquet``. Older revisions of the repository hold the same pairs as
config ``evalharm`` (``evalharm/test-*.parquet``, parquet branch ``evalharm/test/0000.parquet``, without
the class columns); every layout is read.

Which judge the paper used: the SPA-VL paper and its project page (sqrtizhang.github.io/SPA-VL) describe
HarmEval as the test set "used to evaluate harmfulness" (an unsafe rate); neither the project page, the
dataset card nor the training repository (GitHub ``EchoseChen/SPA-VL-RLHF``, which has no evaluation
code) names the judge model in what we could read. The reference axis is harm; the default judges are
``harm`` and ``refusal`` (a stand-in), and a harm model judge (``llama-guard``, ``wildguard
view=harm``, ``llm-judge mode=harm``) is the closer measure.

Every question should be refused; metrics are per ``class1`` (category) and ``class2`` (subcategory).
The images travel inside the parquet file, so image mode ``original`` needs nothing else.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from vlguard.benchmarks.base import BenchmarkData
from vlguard.benchmarks.counts import file_count
from vlguard.benchmarks.csv_source import check_options
from vlguard.benchmarks.hub import hub_snapshot
from vlguard.data.images import MemoryImageSource
from vlguard.data.sources import looks_like_repo_id, sha256_file
from vlguard.errors import ConfigError, DataValidationError, Problem, VLGuardError
from vlguard.records import Sample

HUB_REPO = "sqrti/SPA-VL"
# Where the harm split lives in the repository, newest layout first (then the parquet branch's names).
LAYOUTS = (
    "test/harm-*.parquet",
    "test/harm/*.parquet",
    "evalharm/test-*.parquet",
    "evalharm/test/*.parquet",
)
SUBSET = "spa_vl_harm"
SPLIT = f"{HUB_REPO} test/harm"
# The dataset card: 265 examples in the harm split (and 265 in help).
PUBLISHED_COUNTS = {SPLIT: {"image-question pairs": 265}}
_WHERE = f"the Hub dataset {HUB_REPO} (config test, split harm)"


def load_spa_vl_harmeval(
    data: str | Path | None = None, revision: str | None = None, **options: Any
) -> BenchmarkData:
    """Load SPA-VL HarmEval from ``data``: a parquet file, a folder laid out like the Hub repository, or a
    Hub dataset id (default ``sqrti/SPA-VL`` at ``revision``).

    Sample ids are ``spa-vl-harm-<row>:spa_vl_harm`` with the 1-based row of the split (stable for a
    pinned revision; the manifest records the file's hash). Rows without a question or an image are
    reported with the file, row and column.
    """
    check_options("spa-vl-harmeval", options, set())
    files, source, is_split = _parquet_files(HUB_REPO if data is None else data, revision)
    samples: list[Sample] = []
    images: dict[str, bytes] = {}
    problems: list[Problem] = []
    row_number = 0
    for path in files:
        for row in _read_rows(path):
            row_number += 1
            problems += _add_row(path, row_number, row, samples, images)
    if problems:
        raise DataValidationError(problems, hint=f"SPA-VL HarmEval expects the columns of {_WHERE}.")
    if not samples:
        raise DataValidationError([Problem(str(files[0]), "", "", "no rows in the harm split")])
    source.update(
        benchmark="spa-vl-harmeval",
        files=[p.name for p in files],
        sha256={p.name: sha256_file(p) for p in files},
        n_samples=len(samples),
    )
    return BenchmarkData(
        name="spa-vl-harmeval",
        samples=tuple(samples),
        images=MemoryImageSource(images, origin=", ".join(str(p) for p in files)),
        source=source,
        counts=(
            file_count(
                ", ".join(str(p) for p in files),
                "image-question pairs",
                row_number,
                PUBLISHED_COUNTS,
                part=SPLIT if is_split else files[0].name,
            ),
        ),
    )


def _add_row(
    path: Path, number: int, row: dict[str, Any], samples: list[Sample], images: dict[str, bytes]
) -> list[Problem]:
    file, where = str(path), f"row {number}"
    problems = []
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        problems.append(Problem(file, where, "question", "missing or empty"))
    image = row.get("image")
    data = image.get("bytes") if isinstance(image, dict) else image if isinstance(image, bytes) else None
    if not data:
        problems.append(Problem(file, where, "image", "no encoded image bytes"))
    if problems:
        return problems
    assert isinstance(question, str) and isinstance(data, bytes)
    stored = image.get("path") if isinstance(image, dict) else None
    suffix = PurePosixPath(stored).suffix if isinstance(stored, str) and stored else ""
    name = f"harm/{number}{suffix or '.img'}"
    images[name] = data
    record_id = f"spa-vl-harm-{number}"
    samples.append(
        Sample(
            id=f"{record_id}:{SUBSET}",
            benchmark="spa-vl-harmeval",
            subset=SUBSET,
            prompt=question.strip(),
            image=name,
            reference=None,
            category=_text(row.get("class1")),
            subcategory=_text(row.get("class2")),
            should_refuse=True,
            record_id=record_id,
        )
    )
    return []


def _text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _read_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise VLGuardError(f"{path}: not a readable parquet file: {err}") from err
    missing = [c for c in ("image", "question") if c not in table.column_names]
    if missing:
        raise DataValidationError(
            [
                Problem(str(path), "", c, f"missing column (columns: {', '.join(table.column_names)})")
                for c in missing
            ]
        )
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _parquet_files(data: str | Path, revision: str | None) -> tuple[list[Path], dict[str, Any], bool]:
    """The parquet file(s) of the harm split, the source record for the manifest, and whether they were
    found as the published split (a layout of the repository) rather than given as a file."""
    path = Path(data).expanduser()
    if path.is_file():
        if revision is not None:
            raise ConfigError(f"revision {revision!r} only applies to a Hub dataset id, not to {path}")
        return [path], {"kind": "local", "path": str(path.resolve())}, False
    if path.is_dir():
        if revision is not None:
            raise ConfigError(f"revision {revision!r} only applies to a Hub dataset id, not to {path}")
        return _layout_files(path, str(path)), {"kind": "local", "path": str(path.resolve())}, True
    if path.exists() or not isinstance(data, str) or not looks_like_repo_id(data):
        raise ConfigError(
            f"{path}: no such parquet file or folder, and not a Hub dataset id (benchmark 'spa-vl-harmeval')"
        )
    folder, record = hub_snapshot(
        data,
        revision=revision,
        allow_patterns=list(LAYOUTS),
        benchmark="spa-vl-harmeval",
        what="the harm split",
    )
    return _layout_files(folder, f"Hub dataset {data}"), record, True


def _layout_files(folder: Path, described: str) -> list[Path]:
    for pattern in LAYOUTS:
        found = sorted(folder.glob(pattern))
        if found:
            return found
    raise ConfigError(f"{described}: no {' or '.join(LAYOUTS)} (expected the layout of {_WHERE})")
