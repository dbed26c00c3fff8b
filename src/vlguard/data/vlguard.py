"""VLGuard records: loading, validation, and the flat sample view.

A VLGuard file is a JSON list of image records::

    {"id": "Ads_306373", "image": "bad_ads/ed92....png", "safe": true,
     "instr-resp": [{"safe_instruction": "...", "response": "..."},
                    {"unsafe_instruction": "...", "response": "..."}]}
    {"id": "...", "image": "...", "safe": false, "harmful_category": "privacy",
     "harmful_subcategory": "personal data", "instr-resp": [{"instruction": "...", "response": "..."}]}

Each instruction becomes one ``Sample`` with a subset: ``unsafe`` (key ``instruction`` of a harmful
image), ``safe_unsafe`` (``unsafe_instruction``) or ``safe_safe`` (``safe_instruction``).

Sample ids are ``<record uid>:<subset>``. The record uid is the record id, except that the n-th
record (n ≥ 2) sharing an id with earlier ones gets ``<id>#<n>``: VLGuard's train.json annotates one
image twice under id ``Ads_303871`` (same image, different instructions), so its samples are
``Ads_303871:safe_safe`` and ``Ads_303871#2:safe_safe``. Ids therefore depend only on the ids and the
order of the file, never on image paths. Two records with one id but different images, or a record
repeated verbatim, are refused as duplicates.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlguard.data.images import ImageSource, open_image_root, unsafe_path_reason
from vlguard.data.jsonio import read_json
from vlguard.data.sources import ResolvedFiles, resolve_vlguard_files
from vlguard.errors import ConfigError, DataValidationError, ImageLoadError, Problem
from vlguard.records import (
    INSTRUCTION_KEYS,
    MAX_PROMPT_CHARS,
    SUBSETS,
    InstructionKey,
    InstructionResponse,
    Sample,
    Subset,
    VLGuardRecord,
)

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
# Which subset an instruction key belongs to.
SUBSET_OF_KEY: dict[InstructionKey, Subset] = {
    "instruction": "unsafe",
    "unsafe_instruction": "safe_unsafe",
    "safe_instruction": "safe_safe",
}


@dataclass(frozen=True)
class VLGuardDataset:
    """One split of VLGuard: validated records, where their images are, and where they came from.

    ``images`` is None when no image root is available (e.g. the annotations-only copy of the data).
    ``references`` maps sample id → GPT-4V reference answer (``gpt4_safe_safes.json``, test split).
    ``problems`` lists the records skipped under ``skip_invalid``.
    """

    records: tuple[VLGuardRecord, ...]
    split: str
    images: ImageSource | None
    source: dict[str, Any]
    problems: tuple[Problem, ...] = ()
    references: dict[str, str] = field(default_factory=dict)

    def samples(self, subsets: Iterable[str] | None = None) -> list[Sample]:
        """The flat sample view (one per instruction), optionally restricted to some subsets."""
        samples = samples_from_records(self.records, benchmark=f"vlguard-{self.split}")
        if subsets is None:
            return samples
        wanted = set(subsets)
        unknown = wanted - set(SUBSETS)
        if unknown:
            raise ConfigError(f"unknown subset(s) {sorted(unknown)}; choose from {list(SUBSETS)}")
        return [s for s in samples if s.subset in wanted]


def sample_id(record: VLGuardRecord, subset: str) -> str:
    """The stable, unique id of a record's sample in ``subset``."""
    return f"{record.uid}:{subset}"


def samples_from_records(records: Iterable[VLGuardRecord], *, benchmark: str = "vlguard") -> list[Sample]:
    """One ``Sample`` per instruction, in file order; unsafe and safe_unsafe samples should be refused."""
    samples = []
    for record in records:
        for pair in record.pairs:
            subset = SUBSET_OF_KEY[pair.key]
            samples.append(
                Sample(
                    id=sample_id(record, subset),
                    benchmark=benchmark,
                    subset=subset,
                    prompt=pair.instruction,
                    image=record.image,
                    reference=pair.response,
                    category=record.category,
                    subcategory=record.subcategory,
                    should_refuse=subset != "safe_safe",
                    record_id=record.uid,
                )
            )
    return samples


# ---------------------------------------------------------------------------------------------------
# Validation


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


ProblemSink = Callable[[str, str], None]  # (field, message)


def _check_category(raw: dict[str, Any], safe: Any, problem: ProblemSink) -> dict[str, str | None]:
    """The harmful (sub)category: required strings for harmful images, ignored for safe ones."""
    category: dict[str, str | None] = {}
    for key in ("harmful_category", "harmful_subcategory"):
        value = raw.get(key)
        if safe is False and key not in raw:
            problem(key, "missing field (required for a harmful image, 'safe': false)")
        elif value is not None and not isinstance(value, str):
            problem(key, f"expected str, got {_type_name(value)}")
        elif safe is False and isinstance(value, str) and not value.strip():
            problem(key, "empty")
        elif safe is False and value is None:
            problem(key, "expected str, got null (required for a harmful image)")
        category[key] = value if isinstance(value, str) and safe is False else None
    return category


def _check_pairs(entries: Any, safe: Any, problem: ProblemSink) -> list[InstructionResponse]:
    """The instruction/response pairs of ``instr-resp`` (type errors are reported by the caller)."""
    pairs: list[InstructionResponse] = []
    if not isinstance(entries, list):
        return pairs
    if not entries:
        problem("instr-resp", "empty list: at least one instruction/response pair is needed")
    for j, entry in enumerate(entries):
        where = f"instr-resp[{j}]"
        if not isinstance(entry, dict):
            problem(where, f"expected an object, got {_type_name(entry)}")
            continue
        unknown = [k for k in entry if k != "response" and k not in INSTRUCTION_KEYS]
        for key in unknown:
            problem(
                f"{where}.{key}", f"unknown instruction key (expected one of {', '.join(INSTRUCTION_KEYS)})"
            )
        keys = [k for k in INSTRUCTION_KEYS if k in entry]
        if len(keys) != 1:
            if not unknown:
                problem(where, f"expected exactly one instruction key, found {len(keys)}")
            continue
        key = keys[0]
        text, response = entry[key], entry.get("response")
        if not isinstance(text, str):
            problem(f"{where}.{key}", f"expected str, got {_type_name(text)}")
        elif not text.strip():
            problem(f"{where}.{key}", "empty instruction")
        elif len(text) > MAX_PROMPT_CHARS:
            problem(f"{where}.{key}", f"{len(text):,} characters, over the limit of {MAX_PROMPT_CHARS:,}")
        if "response" not in entry:
            problem(f"{where}.response", "missing field")
        elif not isinstance(response, str):
            problem(f"{where}.response", f"expected str, got {_type_name(response)}")
        # An empty response is allowed: VLGuard's test.json has 17 (only instructions are evaluated).
        if isinstance(text, str) and isinstance(response, str):
            pairs.append(InstructionResponse(key=key, instruction=text, response=response))
    keys_used = [p.key for p in pairs]
    if isinstance(safe, bool) and entries and len(pairs) == len(entries):
        # The subsets follow from the keys, so the keys must agree with the 'safe' flag.
        if not safe and keys_used != ["instruction"]:
            problem(
                "instr-resp", f"a harmful image needs exactly one 'instruction' pair, found keys {keys_used}"
            )
        if safe and ("instruction" in keys_used or len(set(keys_used)) != len(keys_used)):
            problem(
                "instr-resp",
                "a safe image needs one 'safe_instruction' and/or one 'unsafe_instruction' pair, "
                f"found keys {keys_used}",
            )
    return pairs


def _check_record(raw: Any, index: int, file: str) -> tuple[VLGuardRecord | None, list[Problem]]:
    """Validate one raw record; the record, or None with every problem found in it."""
    if not isinstance(raw, dict):
        return None, [Problem(file, f"#{index}", "", f"expected a JSON object, got {_type_name(raw)}")]
    rid = raw.get("id")
    name = rid if isinstance(rid, str) and rid.strip() else f"#{index}"
    problems: list[Problem] = []

    def problem(field_name: str, message: str) -> None:
        problems.append(Problem(file, name, field_name, message))

    for key, kind in (("id", str), ("image", str), ("safe", bool), ("instr-resp", list)):
        if key not in raw:
            problem(key, "missing field")
        elif not isinstance(raw[key], kind):
            problem(key, f"expected {kind.__name__}, got {_type_name(raw[key])}")
    if isinstance(rid, str) and not rid.strip():
        problem("id", "empty id")
    image = raw.get("image")
    if isinstance(image, str):
        reason = unsafe_path_reason(image)
        if reason is not None:
            problem("image", reason)
    safe = raw.get("safe")

    category = _check_category(raw, safe, problem)
    pairs = _check_pairs(raw.get("instr-resp"), safe, problem)
    if problems:
        return None, problems
    assert isinstance(rid, str) and isinstance(image, str) and isinstance(safe, bool)
    record = VLGuardRecord(
        id=rid,
        image=image,
        safe=safe,
        category=category["harmful_category"],
        subcategory=category["harmful_subcategory"],
        pairs=tuple(pairs),
    )
    return record, []


def parse_vlguard_records(data: Any, file: str) -> tuple[list[VLGuardRecord], list[Problem]]:
    """Validate the parsed content of a VLGuard file: the valid records and the problems of the rest.

    Duplicate ids: the n-th record with an id gets ``occurrence`` n (see the module docstring) when it
    names the same image with other instructions; another image, or a verbatim repeat, is a problem.
    """
    if not isinstance(data, list):
        return [], [Problem(file, "", "", f"expected a JSON list of records, got {_type_name(data)}")]
    records: list[VLGuardRecord] = []
    problems: list[Problem] = []
    first_index: dict[str, int] = {}
    seen: dict[str, list[VLGuardRecord]] = {}
    for index, raw in enumerate(data):
        record, found = _check_record(raw, index, file)
        if record is None:
            problems.extend(found)
            continue
        earlier = seen.setdefault(record.id, [])
        if earlier:
            first = earlier[0]
            where = f"{record.id} (#{index})"
            if record.image != first.image:
                problems.append(
                    Problem(
                        file,
                        where,
                        "id",
                        f"duplicate id: record #{first_index[record.id]} has this id with another image ({first.image})",
                    )
                )
                continue
            if any(e.pairs == record.pairs and e.safe == record.safe for e in earlier):
                problems.append(
                    Problem(
                        file,
                        where,
                        "id",
                        f"duplicate record: repeats record #{first_index[record.id]} verbatim",
                    )
                )
                continue
            record = dataclasses.replace(record, occurrence=len(earlier) + 1)
        else:
            first_index[record.id] = index
        earlier.append(record)
        records.append(record)
    # An id written as 'X#2' in the file would collide with the uid of the second 'X'.
    uids = Counter(r.uid for r in records)
    clashes = {uid for uid, n in uids.items() if n > 1}
    if clashes:
        problems.extend(
            Problem(file, uid, "id", "duplicate id (clashes with a numbered repeat)")
            for uid in sorted(clashes)
        )
        records = [r for r in records if r.uid not in clashes]
    return records, problems


def _load_references(path: Path, records: Sequence[VLGuardRecord]) -> tuple[dict[str, str], list[Problem]]:
    """GPT-4V answers for safe/safe samples, keyed by sample id."""
    data = read_json(path)
    file = str(path)
    if not isinstance(data, list):
        return {}, [Problem(file, "", "", f"expected a JSON list, got {_type_name(data)}")]
    by_id: dict[str, list[VLGuardRecord]] = {}
    for record in records:
        if record.safe:
            by_id.setdefault(record.id, []).append(record)
    references: dict[str, str] = {}
    problems: list[Problem] = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            problems.append(
                Problem(file, f"#{index}", "", f"expected a JSON object, got {_type_name(entry)}")
            )
            continue
        rid, answer = entry.get("id"), entry.get("response", entry.get("output"))
        name = rid if isinstance(rid, str) else f"#{index}"
        if not isinstance(rid, str):
            problems.append(Problem(file, name, "id", f"expected str, got {_type_name(rid)}"))
        elif not isinstance(answer, str):
            problems.append(Problem(file, name, "response", f"expected str, got {_type_name(answer)}"))
        elif rid not in by_id:
            problems.append(Problem(file, name, "id", "no safe record with this id in the split"))
        else:
            # Several records may share an id: the one whose safe instruction matches.
            candidates = by_id[rid]
            match = next(
                (
                    r
                    for r in candidates
                    for p in r.pairs
                    if p.key == "safe_instruction" and p.instruction == entry.get("instruction")
                ),
                candidates[0],
            )
            references[sample_id(match, "safe_safe")] = answer
    return references, problems


def load_vlguard(
    source: str | Path,
    split: str = "test",
    *,
    revision: str | None = None,
    skip_invalid: bool = False,
    image_root: str | Path | None = None,
    download_images: bool = True,
) -> VLGuardDataset:
    """Load and validate one split of VLGuard.

    ``source``: a local folder (``<split>.json``, optional ``gpt4_safe_safes.json``, images in
    ``<split>/`` or ``<split>.zip``), a local JSON file, or a Hub dataset repo id (``ys-zong/VLGuard``,
    at ``revision``, through the huggingface_hub cache). ``image_root`` (folder or zip) overrides where
    images are looked up; without any, ``images`` is None.

    Invalid records raise ``DataValidationError`` listing every problem (file, record, field), unless
    ``skip_invalid``: then the valid records load and the others are listed in ``problems``.
    """
    files = resolve_vlguard_files(
        source, split, revision=revision, image_root=image_root, download_images=download_images
    )
    return _load_from_files(files, split, skip_invalid=skip_invalid)


def _load_from_files(files: ResolvedFiles, split: str, *, skip_invalid: bool) -> VLGuardDataset:
    data = read_json(files.split_file)
    records, problems = parse_vlguard_records(data, str(files.split_file))
    references: dict[str, str] = {}
    if files.references_file is not None:
        references, reference_problems = _load_references(files.references_file, records)
        problems += reference_problems
    file_level = [p for p in problems if not p.record]
    if file_level or (problems and not skip_invalid):
        hint = "" if file_level else "(use --skip-invalid / skip_invalid=True to load the valid records only)"
        raise DataValidationError(problems, hint=hint)
    for p in problems:
        logger.warning("skipped: %s", p)
    images = open_image_root(files.image_root) if files.image_root is not None else None
    return VLGuardDataset(
        records=tuple(records),
        split=split,
        images=images,
        source=files.describe(),
        problems=tuple(problems),
        references=references,
    )


def dataset_stats(dataset: VLGuardDataset) -> dict[str, Any]:
    """Counts of one split: records, samples per subset, harmful images per category and subcategory."""
    samples = dataset.samples()
    unsafe_records = [r for r in dataset.records if not r.safe]
    by_subset = Counter(s.subset for s in samples)
    by_category = Counter(r.category for r in unsafe_records)
    return {
        "split": dataset.split,
        "records": len(dataset.records),
        "safe_images": len(dataset.records) - len(unsafe_records),
        "unsafe_images": len(unsafe_records),
        "samples": len(samples),
        "samples_by_subset": {subset: by_subset.get(subset, 0) for subset in SUBSETS},
        "unsafe_by_category": dict(by_category.most_common()),
        "unsafe_by_subcategory": dict(Counter(r.subcategory for r in unsafe_records).most_common()),
        # (category, subcategory) pairs, most frequent category first: the taxonomy as found in the data.
        "unsafe_category_pairs": sorted(
            {(r.category, r.subcategory) for r in unsafe_records},
            key=lambda pair: (-by_category[pair[0]], str(pair[0]), str(pair[1])),
        ),
        "references": len(dataset.references),
        "images_available": dataset.images is not None,
        "skipped_problems": len(dataset.problems),
    }


def check_images(dataset: VLGuardDataset) -> list[Problem]:
    """Open every image of the dataset; one problem per missing, truncated, non-image or oversized file."""
    where = dataset.source.get("image_root") or "(no image root)"
    if dataset.images is None:
        return [
            Problem(
                str(where), "", "", "no image root: put the images in <split>/ or <split>.zip, or pass one"
            )
        ]
    problems = []
    for record in dataset.records:
        try:
            dataset.images.open(record.image)
        except ImageLoadError as err:
            problems.append(Problem(str(where), record.uid, "image", str(err)))
    return problems
