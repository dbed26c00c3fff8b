"""Example generations for the report: a few samples per subset, each run's answer and verdicts,
and a thumbnail of the sample's image when the run's benchmark source still has it.

Examples are chosen deterministically. Samples whose verdict changed between the baseline and the last
run come first (they show what fine-tuning did), then others in a stable pseudo-random order (a hash
of the id), so the examples spread over categories instead of taking the alphabetically first ones.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlguard.errors import ImageLoadError
from vlguard.records import SUBSETS, Sample
from vlguard.report.loading import RunData

logger = logging.getLogger(__name__)

THUMBNAIL_PX = 160
MAX_RESPONSE_CHARS = 1200


@dataclass(frozen=True)
class ExampleAnswer:
    """One run's answer to an example: the response (maybe cut), its error, and each judge's label."""

    run: str
    response: str
    truncated_chars: int
    error: str | None
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Example:
    """One sample shown in the report with every run's answer and an optional thumbnail."""

    sample: Sample
    answers: tuple[ExampleAnswer, ...]
    thumbnail: bytes | None = None
    thumbnail_mime: str = "image/png"
    changed: bool = False  # the primary judge's label differs between the baseline and the last run


@dataclass(frozen=True)
class ExampleSection:
    """The examples of one subset and how many samples of that subset the runs share."""

    subset: str
    examples: tuple[Example, ...]
    n_available: int


@dataclass(frozen=True)
class ImageStatus:
    """Whether thumbnails could be shown, and a sentence saying why not when they could not."""

    available: bool
    note: str


def _stable_rank(sample_id: str) -> str:
    return hashlib.sha256(sample_id.encode("utf-8")).hexdigest()


def image_root_of(run: RunData) -> str | None:
    """The image root recorded in a run's manifest (``benchmark_source.image_root``), if any."""
    source = run.manifest.get("benchmark_source")
    if not isinstance(source, dict):
        return None
    root = source.get("image_root")
    if root is None and isinstance(source.get("source"), dict):
        root = source["source"].get("image_root")
    return root if isinstance(root, str) and root else None


def open_images(runs: Sequence[RunData]) -> tuple[Any, ImageStatus]:
    """The first image root of the runs that can be opened, and a note for the report."""
    from vlguard.data.images import open_image_root

    tried: list[str] = []
    for run in runs:
        root = image_root_of(run)
        if root is None:
            continue
        try:
            return open_image_root(Path(root)), ImageStatus(True, f"Thumbnails come from {root}.")
        except ImageLoadError as err:
            tried.append(str(err))
    if tried:
        return None, ImageStatus(False, "Images are not available: " + "; ".join(tried) + ".")
    return None, ImageStatus(
        False,
        "Images are not available: the runs' benchmark source records no image folder "
        "(e.g. annotations without images), so no thumbnails are shown.",
    )


def thumbnail(images: Any, relative_path: str, size: int = THUMBNAIL_PX) -> tuple[bytes, str] | None:
    """A small PNG or JPEG (whichever is smaller) of an image, or None when it cannot be read."""
    try:
        image = images.open(relative_path)
    except ImageLoadError as err:
        logger.warning("no thumbnail for %s: %s", relative_path, err)
        return None
    image = image.convert("RGB")
    image.thumbnail((size, size))
    encoded: list[tuple[bytes, str]] = []
    for fmt, mime, options in (
        ("PNG", "image/png", {"optimize": True}),
        ("JPEG", "image/jpeg", {"quality": 80}),
    ):
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options)
        encoded.append((buffer.getvalue(), mime))
    return min(encoded, key=lambda item: len(item[0]))


def _answer(run: RunData, sample_id: str) -> ExampleAnswer:
    generation = run.generations.get(sample_id)
    labels = {judge: by_id[sample_id].label for judge, by_id in run.judgments.items() if sample_id in by_id}
    response = generation.response if generation else ""
    cut = max(0, len(response) - MAX_RESPONSE_CHARS)
    return ExampleAnswer(
        run=run.label,
        response=response[:MAX_RESPONSE_CHARS] if cut else response,
        truncated_chars=cut,
        error=generation.error if generation else "no generation recorded",
        labels=labels,
    )


def select_examples(
    runs: Sequence[RunData],
    per_subset: int = 3,
    judge: str | None = None,
    images: Any = None,
) -> list[ExampleSection]:
    """Up to ``per_subset`` examples of each subset that every run answered (see module docstring)."""
    if not runs or per_subset <= 0:
        return []
    base, last = runs[0], runs[-1]
    shared = [sample for sid, sample in base.samples.items() if all(sid in run.generations for run in runs)]
    present = {x.subset for x in shared}
    subsets: list[str] = [s for s in SUBSETS if s in present]
    subsets += sorted(present - set(subsets))
    sections: list[ExampleSection] = []
    for subset in subsets:
        members = [x for x in shared if x.subset == subset]

        def changed(sample: Sample) -> bool:
            if judge is None or len(runs) < 2:
                return False
            a, b = base.judgments.get(judge, {}).get(sample.id), last.judgments.get(judge, {}).get(sample.id)
            return a is not None and b is not None and a.label != b.label

        members.sort(key=lambda x: (not changed(x), _stable_rank(x.id)))
        examples = []
        for sample in members[:per_subset]:
            thumb = thumbnail(images, sample.image) if images is not None and sample.image else None
            examples.append(
                Example(
                    sample=sample,
                    answers=tuple(_answer(run, sample.id) for run in runs),
                    thumbnail=thumb[0] if thumb else None,
                    thumbnail_mime=thumb[1] if thumb else "image/png",
                    changed=changed(sample),
                )
            )
        sections.append(ExampleSection(subset=subset, examples=tuple(examples), n_available=len(members)))
    return sections
