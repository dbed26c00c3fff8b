"""What a curation run starts from: the user's images and the labels the user already has.

Images are the files with an image extension anywhere under ``IMAGES_DIR`` (hidden files and folders
are skipped), addressed by their path relative to it, which becomes the record's ``image`` in the
curated ``train.json``. Each image's id is ``cur_`` + the first 12 hex digits of the sha256 of that path:
stable across runs, unique, and never the path itself.

The labels file is a CSV with a header: ``image`` (the relative path) and any of ``safe``, ``category``,
``subcategory``. An empty cell is a gap the writer model fills. ``safe`` is true/false (also yes/no,
1/0, safe/unsafe, harmless/harmful); a category without ``safe`` means harmful. Every problem (an unknown
column, an image that is not in the folder, a category not in the taxonomy, a safe image with a
category, a repeated image) is listed in one ``DataValidationError`` naming the row and the column.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vlguard.curate.taxonomy import Taxonomy
from vlguard.data.images import unsafe_path_reason
from vlguard.errors import ConfigError, DataValidationError, Problem
from vlguard.fileio import read_text

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
LABEL_COLUMNS = ("image", "safe", "category", "subcategory")
_TRUE = frozenset({"true", "yes", "1", "safe", "harmless"})
_FALSE = frozenset({"false", "no", "0", "unsafe", "harmful"})


@dataclass(frozen=True)
class ImageEntry:
    """One image to curate: its id and its path relative to the images folder."""

    id: str
    path: str


@dataclass(frozen=True)
class UserLabel:
    """What the user said about an image; None where the writer model fills the gap."""

    safe: bool | None = None
    category: str | None = None
    subcategory: str | None = None

    @property
    def complete(self) -> bool:
        """Whether the label needs no model: safe, or harmful with its category and subcategory."""
        return self.safe is True or (
            self.safe is False and self.category is not None and self.subcategory is not None
        )


def image_id(relative_path: str) -> str:
    """The stable id of an image: ``cur_`` + 12 hex digits of the sha256 of its relative path."""
    return "cur_" + hashlib.sha256(relative_path.encode("utf-8")).hexdigest()[:12]


def find_images(images_dir: str | Path) -> list[ImageEntry]:
    """Every image file under ``images_dir`` (hidden files and folders skipped), sorted by path.

    ``ConfigError`` when the folder does not exist or holds no image. Files whose relative path would
    not be safe in a data file (a backslash in the name) are kept here and rejected by the run, so that
    they are reported rather than silently skipped.
    """
    root = Path(images_dir)
    if not root.is_dir():
        reason = "it is a file, not a folder" if root.exists() else "no such folder"
        raise ConfigError(f"{root}: the images folder cannot be used: {reason}")
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            posix = PurePosixPath(*relative.parts).as_posix()
            found.append(ImageEntry(image_id(posix), posix))
    if not found:
        raise ConfigError(
            f"{root}: the images folder holds no image ({', '.join(sorted(IMAGE_SUFFIXES))} files)"
        )
    found.sort(key=lambda entry: entry.path)
    return found


def _flag(text: str) -> bool | None:
    lowered = text.strip().casefold()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected true or false (yes/no, 1/0, safe/unsafe), got {text.strip()!r}")


def read_labels(path: str | Path, taxonomy: Taxonomy, images: list[ImageEntry]) -> dict[str, UserLabel]:
    """The user's labels keyed by image path (see the module docstring); ``DataValidationError`` otherwise."""
    path = Path(path)
    file = str(path)
    if not path.is_file():
        reason = "it is a folder" if path.is_dir() else "no such file"
        raise DataValidationError([Problem(file, "", "", f"cannot read the labels: {reason}")])
    text = read_text(path)
    problems: list[Problem] = []
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as err:
        raise DataValidationError([Problem(file, "", "", f"not a CSV file: {err}")]) from None
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise DataValidationError([Problem(file, "", "", "empty: expected a header row with 'image'")])
    header = [cell.strip().casefold() for cell in rows[0]]
    unknown = [h for h in header if h not in LABEL_COLUMNS]
    if unknown or "image" not in header or len(set(header)) != len(header):
        message = (
            f"unknown column(s) {unknown}" if unknown else "a column is repeated" if "image" in header else ""
        )
        message = message or "no 'image' column"
        raise DataValidationError(
            [Problem(file, "row 1", "", f"{message}; the columns are {', '.join(LABEL_COLUMNS)}")]
        )
    known = {entry.path for entry in images}
    labels: dict[str, UserLabel] = {}
    first_row: dict[str, int] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        record = f"row {number}"

        def problem(field: str, message: str, record: str = record) -> None:
            problems.append(Problem(file, record, field, message))

        if len(row) != len(header):
            problem("", f"{len(row)} cells, the header has {len(header)}")
            continue
        cells = {name: cell.strip() for name, cell in zip(header, row, strict=True)}
        image = cells["image"]
        unsafe = unsafe_path_reason(image)
        if unsafe is not None:
            problem("image", unsafe)
            continue
        image = PurePosixPath(image).as_posix()
        if image not in known:
            problem("image", f"no image {image!r} in the images folder")
            continue
        if image in first_row:
            problem("image", f"{image!r} is labelled again (first in row {first_row[image]})")
            continue
        first_row[image] = number
        label = _row_label(cells, taxonomy, problem)
        if label is not None:
            labels[image] = label
    if problems:
        raise DataValidationError(problems)
    return labels


def _row_label(
    cells: dict[str, str], taxonomy: Taxonomy, report: Callable[[str, str], None]
) -> UserLabel | None:
    """The label of one row, or None after reporting its problems through ``report(field, message)``."""
    safe: bool | None = None
    if cells.get("safe"):
        try:
            safe = _flag(cells["safe"])
        except ValueError as err:
            report("safe", str(err))
            return None
    category, subcategory = cells.get("category") or None, cells.get("subcategory") or None
    if safe is True:
        if category or subcategory:
            field = "category" if category else "subcategory"
            report(field, "a safe image has no category; leave it empty or set safe to false")
            return None
        return UserLabel(safe=True)
    if category is None and subcategory is None:
        return UserLabel(safe=safe)
    try:
        category, subcategory = taxonomy.resolve(category, subcategory)
    except ValueError as err:
        # A category alone with several subcategories is a gap for the model, not a mistake.
        found = taxonomy.category(category) if category and not subcategory else None
        if found is None:
            report("subcategory" if subcategory else "category", str(err))
            return None
        return UserLabel(safe=False, category=found.name)
    return UserLabel(safe=False, category=category, subcategory=subcategory)


def labels_digest(path: str | Path | None) -> str | None:
    """sha256 of the labels file (None without one): a changed file is a different curation."""
    if path is None:
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
