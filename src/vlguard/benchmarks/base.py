"""What a benchmark gives the evaluation pipeline: samples, where their images are, and its source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vlguard.records import Sample

if TYPE_CHECKING:
    # Type-only: the data layer (and Pillow) load only when a benchmark is.
    from vlguard.data.images import ImageSource


@dataclass(frozen=True)
class BenchmarkData:
    """A loaded benchmark. ``source`` goes into the run manifest (path or repo id, revision, file hashes).

    ``references`` maps sample id → reference answer for pairwise helpfulness judging (VLGuard: the
    GPT-4V answers of ``gpt4_safe_safes.json``), when the benchmark has them.
    """

    name: str
    samples: tuple[Sample, ...]
    images: ImageSource | None
    source: dict[str, Any]
    references: dict[str, str] = field(default_factory=dict)
    # Said when images are missing in image mode ``original``: where this benchmark's images come from
    # and how to give them (e.g. VLSafe: a COCO train2017 folder).
    missing_images_hint: str = ""
