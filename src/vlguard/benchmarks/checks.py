"""Checks a benchmark runs before any model loads (``BenchmarkEntry.checks``).

Each is called as ``check(data, samples, image_mode=..., allow_blank_substitutes=...)`` with the loaded
benchmark and the samples about to be generated, and raises a ``VLGuardError`` naming what is wrong: a
mistake found here costs seconds, not the minutes it takes to load a model.
"""

from __future__ import annotations

from collections.abc import Sequence

from vlguard.benchmarks.base import BenchmarkData
from vlguard.data.images import prepare_image
from vlguard.errors import ImageLoadError
from vlguard.records import Sample


def images_usable(
    data: BenchmarkData, samples: Sequence[Sample], *, image_mode: str, allow_blank_substitutes: bool
) -> None:
    """Fail when an image the run will show cannot be used, before the model loads and before the run
    folder is written: images of image mode ``original`` that are missing (the first few named, and where
    to get them; allowed with ``allow_blank_substitutes``), and any present image that does not decode
    (``original``: its pixels; ``blank``: the header that gives the blank image its size), each checked
    once, as generation would prepare it.
    """
    if image_mode == "none":
        return
    if image_mode == "original" and not allow_blank_substitutes:
        missing = [
            s
            for s in samples
            if s.image is not None and (data.images is None or not data.images.exists(s.image))
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
    problems: list[str] = []
    seen: set[str] = set()
    for sample in samples:
        if (
            sample.image is None
            or sample.image in seen
            or data.images is None
            or not data.images.exists(sample.image)
        ):
            continue
        seen.add(sample.image)
        try:
            prepare_image(sample, data.images, image_mode, allow_blank_substitutes=allow_blank_substitutes)  # type: ignore[arg-type]
        except ImageLoadError as err:
            problems.append(f"sample {sample.id}: {err}")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ImageLoadError(
            f"{len(problems)} image(s) cannot be used (checked before the model loads): {shown}"
        )
