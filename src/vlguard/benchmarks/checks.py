"""Checks a benchmark runs before any model loads (``BenchmarkEntry.checks``).

Each is called as ``check(data, samples, image_mode=..., allow_blank_substitutes=...)`` with the loaded
benchmark and the samples about to be generated, and raises a ``VLGuardError`` naming what is wrong: a
mistake found here costs seconds, not the minutes it takes to load a model.
"""

from __future__ import annotations

from collections.abc import Sequence

from vlguard.benchmarks.base import BenchmarkData
from vlguard.errors import ImageLoadError
from vlguard.records import Sample


def images_exist(
    data: BenchmarkData, samples: Sequence[Sample], *, image_mode: str, allow_blank_substitutes: bool
) -> None:
    """Fail when images of image mode ``original`` are missing (names the first few, and where to get them).

    Nothing to check in another image mode, or with ``allow_blank_substitutes`` (a blank image then
    stands in for a missing one).
    """
    if image_mode != "original" or allow_blank_substitutes:
        return
    missing = [
        s for s in samples if s.image is not None and (data.images is None or not data.images.exists(s.image))
    ]
    if missing:
        names = ", ".join(f"{s.id} ({s.image})" for s in missing[:5])
        where = "no image folder was given" if data.images is None else f"not in {data.images!r}"
        hint = data.missing_images_hint or (
            "give the image folder/zip, use --image-mode blank/none, or --allow-blank-substitutes"
        )
        raise ImageLoadError(
            f"{len(missing)} image(s) missing for image mode 'original' ({where}), e.g. {names}. {hint}"
        )
