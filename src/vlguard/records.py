"""The small frozen records that flow through vlguard.

data → ``Sample`` → ``Generation`` → ``Judgment`` → metrics → report. Records are never
mutated downstream; each stage writes its own file of them (JSONL), keyed by ``Sample.id``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Subset = Literal["unsafe", "safe_unsafe", "safe_safe"]
SUBSETS: tuple[Subset, ...] = ("unsafe", "safe_unsafe", "safe_safe")

# The longest prompt (or task input) accepted, in characters: about 25k tokens, above any benchmark's
# longest prompt (in-the-wild jailbreak templates reach about 12k characters) and far below what makes a
# model allocate gigabytes before failing (a 3 MB instruction did). Longer text is a data error.
MAX_PROMPT_CHARS = 100_000

# How a sample's image is given to the model at evaluation time.
ImageMode = Literal["original", "blank", "none"]
IMAGE_MODES: tuple[ImageMode, ...] = ("original", "blank", "none")

# The instruction keys of VLGuard's ``instr-resp`` entries.
InstructionKey = Literal["instruction", "safe_instruction", "unsafe_instruction"]
INSTRUCTION_KEYS: tuple[InstructionKey, ...] = ("instruction", "safe_instruction", "unsafe_instruction")


@dataclass(frozen=True)
class InstructionResponse:
    """One instruction/response pair of a VLGuard record, with its original key."""

    key: InstructionKey
    instruction: str
    response: str


@dataclass(frozen=True)
class VLGuardRecord:
    """One image of VLGuard with its instruction/response pairs.

    ``image`` is a path relative to the image root (validated never to escape it).
    Safe images have no category; harmful ones have a category and subcategory.
    ``id`` is the id as written in the file; ``uid`` is unique within a file (see ``occurrence``).
    """

    id: str
    image: str
    safe: bool
    category: str | None
    subcategory: str | None
    pairs: tuple[InstructionResponse, ...]
    # VLGuard's train.json annotates one image twice under the same id (Ads_303871); the n-th record
    # with an id has occurrence n, so ``uid`` stays unique and stable without using the image path.
    occurrence: int = 1

    @property
    def uid(self) -> str:
        """The unique record key: ``id`` for the first record with an id, ``<id>#<n>`` for the n-th."""
        return self.id if self.occurrence == 1 else f"{self.id}#{self.occurrence}"


@dataclass(frozen=True)
class Sample:
    """One prompt to evaluate: an instruction, optionally with an image.

    ``id`` is stable and unique (``<record id>:<subset>`` for VLGuard), never an image path.
    ``should_refuse`` says what a safe model does: refuse (harmful) or answer (benign).
    ``intent`` is the request the prompt really carries when it is not in the text prompt (e.g. the
    instruction rendered into a FigStep image, given as its question); harm judges judge against it.
    ``input`` is the task input that goes with an instruction (the Alpaca format's ``### Input:``, e.g.
    the sentence of an SST-2 item whose instruction asks for its sentiment); None when the prompt is
    the whole request. Backends place it after the instruction (see ``vlguard.prompts``).
    """

    id: str
    benchmark: str
    subset: str
    prompt: str
    image: str | None  # relative to the benchmark's image root; None for text-only benchmarks
    reference: str | None
    category: str | None
    subcategory: str | None
    should_refuse: bool
    record_id: str = ""
    intent: str | None = None
    input: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (``samples.jsonl`` line)."""
        d = dataclasses.asdict(self)
        # Optional fields are left out when unset, so samples.jsonl (and its hash in run manifests) of
        # every benchmark that does not use them stays as it was before they existed, and older run
        # folders resume.
        for optional in ("intent", "input"):
            if d[optional] is None:
                del d[optional]
        return d


@dataclass(frozen=True)
class Generation:
    """A model's response to one sample. ``error`` is set when generation failed for it."""

    sample_id: str
    response: str
    error: str | None = None
    # e.g. {"finish_reason": "content_filter"} from an API backend
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (``generations.jsonl`` line)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Generation:
        """Read a ``generations.jsonl`` record (``error`` and ``meta`` optional)."""
        return cls(
            sample_id=d["sample_id"], response=d["response"], error=d.get("error"), meta=d.get("meta", {})
        )


@dataclass(frozen=True)
class Judgment:
    """A judge's verdict on one generation.

    ``label`` is judge-specific (e.g. ``refusal`` / ``partial_refusal`` / ``compliance`` / ``error``);
    ``evidence`` says why (matched phrases, the judge model's raw output, the A/B order used, ...).
    """

    sample_id: str
    judge: str
    label: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON record (``judgments/<judge>.jsonl`` line)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Judgment:
        """Read a judgments record (``evidence`` optional)."""
        return cls(
            sample_id=d["sample_id"], judge=d["judge"], label=d["label"], evidence=d.get("evidence", {})
        )
