"""What a benchmark gives the evaluation pipeline: samples, where their images are, and its source."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vlguard.records import Sample

if TYPE_CHECKING:
    # Type-only: the data layer (and Pillow) load only when a benchmark is.
    from vlguard.data.images import ImageSource


@dataclass(frozen=True)
class Count:
    """How many records of one kind a loader read from one published file or split, and how many its
    publication has.

    ``part``: the published file or split (``"forbidden_question_set.csv"``, ``"sqrti/SPA-VL test/harm"``);
    ``file``: where it was read from; ``what``: the records counted (``"questions"``, a subset's name);
    ``expected``: the published number, None when the file is not the published one (a file of the same
    format under another name is the user's own data: recorded, not checked). Counted before any option
    selects rows, so a truncated file is found whatever is evaluated of it.
    """

    part: str
    file: str
    what: str
    found: int
    expected: int | None

    @property
    def short(self) -> bool:
        """Whether the file holds another number of records than its publication."""
        return self.expected is not None and self.found != self.expected

    def to_dict(self) -> dict[str, Any]:
        """The count as recorded in the run manifest (``benchmark_source.counts``)."""
        return {
            "part": self.part,
            "file": self.file,
            "what": self.what,
            "found": self.found,
            "expected": self.expected,
        }


@dataclass(frozen=True)
class BenchmarkData:
    """A loaded benchmark. ``source`` goes into the run manifest (path or repo id, revision, file hashes).

    ``references`` maps sample id → reference answer for pairwise helpfulness judging (VLGuard: the
    GPT-4V answers of ``gpt4_safe_safes.json``), when the benchmark has them. ``counts``: what was read
    of each published file against its published count (``Count``).
    """

    name: str
    samples: tuple[Sample, ...]
    images: ImageSource | None
    source: dict[str, Any]
    references: dict[str, str] = field(default_factory=dict)
    # What the loader read of each published file, against the published numbers; checked by
    # ``vlguard.benchmarks.counts.check_counts`` when the benchmark is loaded through its entry.
    counts: tuple[Count, ...] = ()
    # Said when images are missing in image mode ``original``: where this benchmark's images come from
    # and how to give them (e.g. VLSafe: a COCO train2017 folder).
    missing_images_hint: str = ""
