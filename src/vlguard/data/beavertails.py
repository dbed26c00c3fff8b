"""BeaverTails-format data: question-answer pairs with a safety label and harm categories.

The format of the Hub dataset ``PKU-Alignment/BeaverTails`` (one JSON object per line): ``prompt``
(str), ``response`` (str), ``is_safe`` (bool: whether the response is harmless) and ``category`` (an
object of 14 harm categories → bool). The harmful fine-tuning papers (Vaccine, Lisa, Booster) take
their harmful fine-tuning pairs (``is_safe`` false) and their alignment / "VLGuard" safety pairs
(``is_safe`` true) from split ``30k_train``, and their Harmful Score prompts from the unsafe rows of
``30k_test``.

RepNoise's paired refusals (GitHub ``domenicrosati/representation-noising``,
``data/beavertails_with_refusals_train.json``: BeaverTails ``30k_train`` rows with a ``refusal`` field,
``"Question: {prompt}\nAnswer: {refusal}"``, written by ``scripts/generate_paired_refusals.py``) are the
same format plus that field. Booster (GitHub ``git-disl/Booster`` ``utils.py:228-244``) reads its
safety data from it: the question and the refusal are the two sides of the first ``"\nAnswer: "``, the
question without its ``"Question: "``; ``QAPair.refusal`` holds that split.

A source is a local ``.jsonl`` / ``.json`` file (optionally ``.gz`` or ``.xz`` compressed, as on the
Hub), or the Hub dataset id with a split name (the split's file is downloaded through the
huggingface_hub cache at ``revision``). Every problem names the file, the line and the field.

``beavertails_split`` divides ``30k_test`` by prompt into a ``dev`` and a ``heldout`` half, once for the
whole project: the ``harm`` judge is developed on ``dev`` only and measured on ``heldout``; the harmful
fine-tuning work draws its poison pool from ``dev`` and its Harmful Score prompts from ``heldout``, so
that no Harmful Score prompt was ever in the judge's training data. The split uses the prompt alone
(never the response or its label) and was committed before any row of the file was read.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vlguard.data.sources import DataSourceError, hub_file, looks_like_repo_id, sha256_file
from vlguard.errors import DataValidationError, Problem

BEAVERTAILS_REPO = "PKU-Alignment/BeaverTails"
# Files of the splits in the Hub repository (its README's `configs`), as of the "Re-upload
# BeaverTails-30k" commit 8401fe6 (2023-10-17).
SPLIT_FILES = {
    "30k_train": "round0/30k/train.jsonl.gz",
    "30k_test": "round0/30k/test.jsonl.gz",
    "330k_train": "round0/330k/train.jsonl.xz",
    "330k_test": "round0/330k/test.jsonl.xz",
}
# The project's one split of BeaverTails prompts (see the module docstring): a prompt is held out when
# sha256("<salt>:<normalised prompt>") % 100 < BEAVERTAILS_HELDOUT_PERCENT. Changing either constant
# moves prompts between the halves and invalidates the harm judge's held-out figures.
BEAVERTAILS_SPLIT_SALT = "vlguard-beavertails-split-v1"
BEAVERTAILS_HELDOUT_PERCENT = 50
BeaverTailsSplit = Literal["dev", "heldout"]
# A wrong path (a model file, a video) must not be decompressed into memory whole to be rejected.
MAX_BYTES = 512 * 1024 * 1024


def normalised_prompt(prompt: str) -> str:
    """A prompt as the split sees it: lower case, whitespace collapsed (so a re-spaced copy stays put)."""
    return " ".join(prompt.lower().split())


def beavertails_split(prompt: str) -> BeaverTailsSplit:
    """``dev`` or ``heldout``: the half of the project's BeaverTails split that ``prompt`` belongs to.

    Every row with the same (normalised) prompt lands in the same half, whatever its response.
    """
    key = f"{BEAVERTAILS_SPLIT_SALT}:{normalised_prompt(prompt)}".encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % 100
    return "heldout" if bucket < BEAVERTAILS_HELDOUT_PERCENT else "dev"


@dataclass(frozen=True)
class QAPair:
    """One row: a prompt, a response, whether the response is safe, and the harm categories flagged."""

    line: int  # 1-based line in the file (the index + 1 in a JSON list)
    prompt: str
    response: str
    is_safe: bool | None  # None when the file has no labels (a user's own pairs)
    categories: tuple[str, ...] = ()
    # RepNoise's paired refusal as Booster reads it: (question, refusal); None without a refusal field.
    refusal: tuple[str, str] | None = None


REFUSAL_QUESTION = "Question: "
REFUSAL_ANSWER = "\nAnswer: "


def split_refusal(text: str) -> tuple[str, str] | None:
    """``"Question: Q\nAnswer: A"`` → ``(Q, A)`` exactly as Booster splits RepNoise's refusals
    (``utils.py:232-237``: the question is the part before the first ``"\nAnswer: "`` without
    ``"Question: "``, the answer the part after it up to a second one); None when there is no answer."""
    parts = text.split(REFUSAL_ANSWER)
    if len(parts) < 2 or not parts[1].strip():
        return None
    question = parts[0].replace(REFUSAL_QUESTION, "")
    return (question, parts[1]) if question.strip() else None


@dataclass(frozen=True)
class QAData:
    """Rows of one file, and where they came from (kind, path or repo id, split, revision, sha256)."""

    rows: tuple[QAPair, ...]
    source: dict[str, Any]


def _decompressed_text(path: Path) -> str:
    opener: Any = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open)
    try:
        with opener(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except (OSError, EOFError, lzma.LZMAError) as err:
        raise DataValidationError([Problem(str(path), "", "", f"cannot read the file: {err}")]) from err
    if len(raw) > MAX_BYTES:
        raise DataValidationError([Problem(str(path), "", "", f"larger than {MAX_BYTES:,} bytes")])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataValidationError([Problem(str(path), f"line {line}", "", "not UTF-8 text")]) from err


def _records(path: Path) -> list[tuple[int, Any]]:
    """(line, parsed object) of a JSON list or JSON Lines file (compressed or not)."""
    text = _decompressed_text(path)
    name = path.name.removesuffix(".gz").removesuffix(".xz")
    if name.endswith(".json"):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataValidationError(
                [Problem(str(path), f"line {err.lineno}", "", f"not valid JSON: {err.msg}")]
            ) from err
        if not isinstance(loaded, list):
            raise DataValidationError([Problem(str(path), "", "", "expected a JSON list of objects")])
        return list(enumerate(loaded, start=1))
    records: list[tuple[int, Any]] = []
    problems: list[Problem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            problems.append(Problem(str(path), f"line {number}", "", f"not valid JSON: {err.msg}"))
    if problems:
        raise DataValidationError(problems)
    return records


def parse_qa_rows(records: Sequence[tuple[int, Any]], file: str, *, labelled: bool) -> list[QAPair]:
    """Validate rows (``labelled``: ``is_safe`` is required); every problem is listed in the error."""
    rows: list[QAPair] = []
    problems: list[Problem] = []
    for line, record in records:
        where = f"line {line}"
        if not isinstance(record, dict):
            problems.append(Problem(file, where, "", f"expected a JSON object, got {type(record).__name__}"))
            continue
        before = len(problems)
        for key in ("prompt", "response"):
            value = record.get(key)
            if not isinstance(value, str) or not value.strip():
                problems.append(Problem(file, where, key, "expected a non-empty string"))
        is_safe = record.get("is_safe")
        if labelled and not isinstance(is_safe, bool):
            problems.append(Problem(file, where, "is_safe", f"expected true or false, got {is_safe!r}"))
        elif not labelled and is_safe is not None and not isinstance(is_safe, bool):
            problems.append(
                Problem(file, where, "is_safe", f"expected true, false or absent, got {is_safe!r}")
            )
        refusal = None
        if "refusal" in record:
            raw = record["refusal"]
            refusal = split_refusal(raw) if isinstance(raw, str) else None
            if refusal is None:
                problems.append(
                    Problem(
                        file, where, "refusal", "expected 'Question: ...\\nAnswer: ...' (RepNoise's format)"
                    )
                )
        category = record.get("category", {})
        if not isinstance(category, dict) or not all(
            isinstance(k, str) and isinstance(v, bool) for k, v in category.items()
        ):
            problems.append(
                Problem(file, where, "category", "expected an object of category name → true/false")
            )
        if len(problems) > before:
            continue
        rows.append(
            QAPair(
                line=line,
                prompt=record["prompt"],
                response=record["response"],
                is_safe=is_safe,
                categories=tuple(sorted(k for k, v in category.items() if v)),
                refusal=refusal,
            )
        )
    if problems:
        raise DataValidationError(
            problems, hint="(expected BeaverTails' fields: prompt, response, is_safe, category)"
        )
    return rows


def load_qa_pairs(
    data: str | Path | None,
    *,
    split: str = "30k_train",
    revision: str | None = None,
    labelled: bool = True,
) -> QAData:
    """Load BeaverTails-format rows from a local file, or from a Hub dataset (``data`` = its id, or None
    for ``PKU-Alignment/BeaverTails``) at ``split``.

    ``labelled=False`` accepts files without ``is_safe`` (a user's own prompt/response pairs).
    """
    path = Path(data) if data is not None else None
    if path is not None and path.exists():
        if revision is not None:
            raise DataSourceError(f"{path}: a revision applies to Hub sources only")
        if path.is_dir():
            raise DataSourceError(
                f"{path}: expected a .jsonl or .json file (optionally .gz / .xz), got a folder"
            )
        source: dict[str, Any] = {"kind": "local", "path": str(path.resolve())}
    else:
        repo = str(data) if data is not None else BEAVERTAILS_REPO
        if not looks_like_repo_id(repo):
            raise DataSourceError(f"{data}: no such file (and not a Hub dataset id like {BEAVERTAILS_REPO})")
        if split not in SPLIT_FILES:
            raise DataSourceError(
                f"{repo}: unknown split {split!r}; BeaverTails has {', '.join(SPLIT_FILES)}"
            )
        downloaded = hub_file(repo, SPLIT_FILES[split], revision)
        assert downloaded is not None
        path = downloaded
        source = {
            "kind": "hub",
            "repo_id": repo,
            "split": split,
            "file": SPLIT_FILES[split],
            "revision": revision,
        }
    source["sha256"] = sha256_file(path)
    rows = parse_qa_rows(_records(path), str(path), labelled=labelled)
    if not rows:
        raise DataValidationError([Problem(str(path), "", "", "no rows")])
    source["n_rows"] = len(rows)
    return QAData(rows=tuple(rows), source=source)
