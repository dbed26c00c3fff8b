"""What a benchmark gives the evaluation pipeline: samples, where their images are, and its source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from vlguard.records import Sample

if TYPE_CHECKING:
    from PIL.Image import Image


class ImageSource(Protocol):
    """Opens images by their path relative to a root (a folder or a zip file).

    Implementations refuse paths that escape the root, decompression bombs and non-images, raising
    ``vlguard.errors.ImageLoadError`` with the path in the message.
    """

    def open(self, relative_path: str) -> Image:
        """The decoded image at ``relative_path`` (``ImageLoadError`` when missing, unsafe or corrupt)."""
        ...

    def exists(self, relative_path: str) -> bool:
        """Whether ``relative_path`` names an image under the root (without decoding it)."""
        ...


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
