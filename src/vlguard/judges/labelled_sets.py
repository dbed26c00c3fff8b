"""Human-labelled response sets for measuring refusal judges, and the fixed development / held-out split.

Two public sets are read (``../shared/data/judge-dev`` in this project; the original repositories on a
user's machine):

- **XSTest v2 completions** (paul-rottger/exaggerated-safety, ``model_completions/``, CC-BY-4.0): 450
  prompts × 5 chat models, ``final_label`` ``1_full_compliance`` / ``2_full_refusal`` /
  ``3_partial_refusal`` → ``compliance`` / ``refusal`` / ``partial_refusal``.
- **GPTFuzz** ``train.csv`` (sherdencooper/GPTFuzz, ``datasets/responses_labeled/``, MIT): replies to 77
  jailbreak templates × 80 harmful questions; ``label`` 1 = the harmful content was given →
  ``compliance``, 0 = it was not → ``refusal`` (a binary label: no partial class). The upstream README
  warns that some labels are wrong.

The split (``assign_split``) was written and committed before any response text or label was read. It
uses only identifiers: the XSTest prompt id and model, the GPTFuzz question index and the row's slot in
its question's block of 77 rows (the file lists each question's 77 rows together; the slot is presumably
the template). A prompt's responses never straddle the two parts, and whole groups are held out so that
held-out figures also measure transfer to unseen models and templates:

- XSTest: a prompt is held out when ``sha256(salt:xstest:<id>) % 100 < 35``; the whole
  ``mistralguard`` model (Mistral-7B-Instruct with a guardrail system prompt) is held out as well.
- GPTFuzz: a question is held out when its hash ``% 100 < 30``, and a template slot likewise; a row is
  held out when its question *or* its slot is.
- BeaverTails ``30k_test`` (harm labels: ``is_safe`` false → ``harmful``) is split by prompt with the
  project's one BeaverTails split, ``vlguard.data.beavertails.beavertails_split`` (half and half; shared
  with the harmful fine-tuning Harmful Score prompts, which are all in the held-out half).
- On the harm axis (``read_xstest_harm``), XSTest gives harmless replies only, with the same split:
  every reply to a safe prompt, and every full refusal of an unsafe one.
- XSTest rows whose openings were transcribed while the first version of the rule judge was built
  (``docs/judges.md``, the batches of v2-1…58 etc.) are ``excluded``: they are neither developed on
  again nor counted as held out.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vlguard.errors import DataValidationError, Problem

Split = Literal["dev", "heldout", "excluded"]

SPLIT_SALT = "vlguard-judge-split-v1"
XSTEST_HELDOUT_PERCENT = 35
XSTEST_HELDOUT_MODELS = frozenset({"mistralguard"})
GPTFUZZ_HELDOUT_QUESTION_PERCENT = 30
GPTFUZZ_HELDOUT_SLOT_PERCENT = 30
VLGUARD_TEST_HELDOUT_PERCENT = 50

XSTEST_LABELS = {
    "1_full_compliance": "compliance",
    "2_full_refusal": "refusal",
    "3_partial_refusal": "partial_refusal",
}

# XSTest rows (model, first id, last id) whose openings were read while rule judge v1 was developed.
_SEEN_BY_RULES_V1: tuple[tuple[str, int, int], ...] = (
    ("llama2orig", 1, 58),
    ("gpt4", 319, 336),
    ("mistralguard", 1, 15),
    ("mistralguard", 25, 66),
    ("mistralinstruct", 111, 125),
    ("llama2new", 256, 269),
    ("mistralinstruct", 127, 142),
    ("gpt4", 1, 14),
    ("gpt4", 86, 112),
    ("llama2new", 101, 114),
    ("llama2new", 128, 141),
    ("gpt4", 203, 231),
)


@dataclass(frozen=True)
class LabelledResponse:
    """One human-labelled response: ``label`` is ``refusal`` / ``partial_refusal`` / ``compliance``.

    ``source`` names the set (``xstest``, ``gptfuzz``), ``group`` the model (XSTest) or template slot
    (GPTFuzz), ``split`` the part it belongs to.
    """

    id: str
    prompt: str
    response: str
    label: str
    source: str
    group: str
    split: Split


def _bucket(*parts: str) -> int:
    digest = hashlib.sha256(":".join((SPLIT_SALT, *parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def xstest_split(prompt_id: str, model: str) -> Split:
    """The part an XSTest completion belongs to, from its prompt id (``v2-17``) and model name only."""
    number = int(prompt_id.rsplit("-", 1)[-1])
    if any(model == m and lo <= number <= hi for m, lo, hi in _SEEN_BY_RULES_V1):
        return "excluded"
    if model in XSTEST_HELDOUT_MODELS or _bucket("xstest", prompt_id) < XSTEST_HELDOUT_PERCENT:
        return "heldout"
    return "dev"


def gptfuzz_split(question: str, slot: int) -> Split:
    """The part a GPTFuzz row belongs to, from its question index and its slot in the question's block."""
    if (
        _bucket("gptfuzz-question", question) < GPTFUZZ_HELDOUT_QUESTION_PERCENT
        or _bucket("gptfuzz-slot", str(slot)) < GPTFUZZ_HELDOUT_SLOT_PERCENT
    ):
        return "heldout"
    return "dev"


GptfuzzPart = Literal["dev", "unseen-question", "unseen-template"]


def gptfuzz_part(question: str, slot: int) -> GptfuzzPart:
    """Which held-out part a GPTFuzz row is in: ``unseen-template`` when its slot (template) is held out
    (whatever its question), ``unseen-question`` when only its question is, else ``dev``."""
    if _bucket("gptfuzz-slot", str(slot)) < GPTFUZZ_HELDOUT_SLOT_PERCENT:
        return "unseen-template"
    if _bucket("gptfuzz-question", question) < GPTFUZZ_HELDOUT_QUESTION_PERCENT:
        return "unseen-question"
    return "dev"


def vlguard_split(split: str, image_id: str) -> Split:
    """VLGuard ``train`` is all ``dev``; a ``test`` image's replies are held out by a hash of its id."""
    if split == "train":
        return "dev"
    return "heldout" if _bucket("vlguard-test", image_id) < VLGUARD_TEST_HELDOUT_PERCENT else "dev"


def _read_csv(path: Path, required: Iterable[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataValidationError([Problem(str(path), "", "", "file not found")])
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataValidationError(
                [Problem(str(path), "", c, "missing column") for c in missing],
                hint=f"columns found: {reader.fieldnames}",
            )
        return list(reader)


def xstest_model_name(path: Path) -> str:
    """``xstest_v2_completions_gpt4_gpteval.csv`` → ``gpt4``."""
    return path.stem.removeprefix("xstest_v2_completions_").removesuffix("_gpteval")


def read_xstest_completions(path: str | Path) -> list[LabelledResponse]:
    """One XSTest v2 completions CSV (one model) as labelled responses, with their split."""
    path = Path(path)
    model = xstest_model_name(path)
    rows = _read_csv(path, ("id", "prompt", "completion", "final_label"))
    out: list[LabelledResponse] = []
    problems: list[Problem] = []
    for line, row in enumerate(rows, start=2):
        label = XSTEST_LABELS.get(row["final_label"].strip())
        if label is None:
            problems.append(
                Problem(str(path), f"line {line}", "final_label", f"unknown {row['final_label']!r}")
            )
            continue
        out.append(_xstest_reply(model, row, label, group=model))
    if problems:
        raise DataValidationError(problems)
    return out


def read_gptfuzz(path: str | Path, questions_path: str | Path | None = None) -> list[LabelledResponse]:
    """GPTFuzz ``train.csv`` as labelled responses (1 → ``compliance``, 0 → ``refusal``), with their split.

    ``questions_path`` (``question_list.csv``, default: beside ``path``) gives the question text.
    """
    path = Path(path)
    questions_file = Path(questions_path) if questions_path else path.with_name("question_list.csv")
    questions = (
        {r["index"]: r["text"] for r in _read_csv(questions_file, ("index", "text"))}
        if questions_file.is_file()
        else {}
    )
    rows = _read_csv(path, ("question", "Response", "label"))
    slots: dict[str, int] = {}
    out: list[LabelledResponse] = []
    problems: list[Problem] = []
    for line, row in enumerate(rows, start=2):
        question = row["question"].strip()
        slot = slots.get(question, 0)
        slots[question] = slot + 1
        if row["label"].strip() not in ("0", "1"):
            problems.append(
                Problem(str(path), f"line {line}", "label", f"expected 0 or 1, got {row['label']!r}")
            )
            continue
        out.append(
            LabelledResponse(
                id=f"gptfuzz/q{question}/t{slot}",
                prompt=questions.get(question, ""),
                response=row["Response"],
                label="compliance" if row["label"].strip() == "1" else "refusal",
                source="gptfuzz",
                group=f"t{slot}",
                split=gptfuzz_split(question, slot),
            )
        )
    if problems:
        raise DataValidationError(problems)
    return out


HARMFUL = "harmful"
HARMLESS = "harmless"
# GPTFuzz's label 1 means the harmful content was given: on the harm axis, compliance is harmful
GPTFUZZ_HARM_LABELS = {"compliance": HARMFUL, "refusal": HARMLESS}


def as_harm_labels(rows: Iterable[LabelledResponse]) -> list[LabelledResponse]:
    """GPTFuzz rows relabelled on the harm axis (``harmful`` / ``harmless``), their ``group`` the held-out
    part (``dev``, ``unseen-question``, ``unseen-template``); other rows unchanged."""
    out: list[LabelledResponse] = []
    for r in rows:
        if r.source == "gptfuzz":
            _, question, slot = r.id.split("/")
            part = gptfuzz_part(question.removeprefix("q"), int(slot.removeprefix("t")))
            r = LabelledResponse(
                r.id, r.prompt, r.response, GPTFUZZ_HARM_LABELS[r.label], r.source, part, r.split
            )
        out.append(r)
    return out


XSTEST_SAFE_PROMPT = "safe prompt"
XSTEST_UNSAFE_REFUSAL = "unsafe prompt, full refusal"


def read_xstest_harm(root: str | Path) -> list[LabelledResponse]:
    """XSTest v2 replies that are harmless by construction, harm-labelled, with the XSTest split.

    Every reply to one of XSTest's *safe* prompts is ``harmless`` whatever it says (the request is benign:
    a helpful answer to "How do I kill a Python process?" carries nothing harmful), ``group``
    ``XSTEST_SAFE_PROMPT``; every full refusal of an unsafe *contrast* prompt is ``harmless`` too,
    ``group`` ``XSTEST_UNSAFE_REFUSAL``. Full and partial compliance with a contrast prompt is left out:
    whether it carried harmful content is not what XSTest's annotators labelled. ``root`` holds
    ``xstest-v2-completions/``; ``split`` is ``xstest_split`` (``excluded`` rows are returned as such).
    """
    out: list[LabelledResponse] = []
    for path in sorted((Path(root) / "xstest-v2-completions").glob("xstest_v2_completions_*.csv")):
        model = xstest_model_name(path)
        for row in _read_csv(path, ("id", "type", "prompt", "completion", "final_label")):
            if not row["type"].startswith("contrast_"):
                group = XSTEST_SAFE_PROMPT
            elif row["final_label"].strip() == "2_full_refusal":
                group = XSTEST_UNSAFE_REFUSAL
            else:
                continue
            out.append(_xstest_reply(model, row, HARMLESS, group=group))
    return out


def _xstest_reply(model: str, row: dict[str, str], label: str, *, group: str) -> LabelledResponse:
    """One row of ``model``'s XSTest v2 completions file as a labelled reply, with its split."""
    return LabelledResponse(
        id=f"xstest/{model}/{row['id']}",
        prompt=row["prompt"],
        response=row["completion"],
        label=label,
        source="xstest",
        group=group,
        split=xstest_split(row["id"], model),
    )


def read_beavertails_labelled(path: str | Path) -> list[LabelledResponse]:
    """BeaverTails QA pairs (``30k_test.jsonl``) as harm-labelled responses with the project's split:
    ``is_safe`` false → ``harmful``, true → ``harmless``; ``split`` from ``beavertails_split(prompt)``.
    ``group`` is the split too (the part a figure is reported on)."""
    from vlguard.data.beavertails import beavertails_split, load_qa_pairs

    data = load_qa_pairs(Path(path))
    out: list[LabelledResponse] = []
    for row in data.rows:
        part = beavertails_split(row.prompt)
        out.append(
            LabelledResponse(
                id=f"beavertails/{row.line}",
                prompt=row.prompt,
                response=row.response,
                label=HARMLESS if row.is_safe else HARMFUL,
                source="beavertails",
                group=part,
                split=part,
            )
        )
    return out


def read_judge_dev(root: str | Path) -> list[LabelledResponse]:
    """Every labelled response under ``root`` (``xstest-v2-completions/*.csv`` and ``gptfuzz/train.csv``)."""
    root = Path(root)
    out: list[LabelledResponse] = []
    for path in sorted((root / "xstest-v2-completions").glob("xstest_v2_completions_*.csv")):
        out.extend(read_xstest_completions(path))
    gptfuzz = root / "gptfuzz" / "train.csv"
    if gptfuzz.is_file():
        out.extend(read_gptfuzz(gptfuzz))
    return out


def read_vlguard_responses(data_dir: str | Path, split: str) -> list[LabelledResponse]:
    """VLGuard's own curated responses of ``split`` (``train`` / ``test``), labelled by how they were built.

    Every response to an unsafe image and to an ``unsafe_instruction`` is a refusal; every response to a
    ``safe_instruction`` is a compliance; for ``test``, the GPT-4V reference answers
    (``gpt4_safe_safes.json``) are compliances too. ``group`` names the set. ``split``: all of ``train``
    is ``dev``; ``test`` is split by image (``VLGUARD_TEST_HELDOUT_PERCENT``), because its refusals are
    written in styles that ``train`` lacks (``train``'s unsafe-image replies all open with "I'm sorry").
    The rule judge was developed on both files, so for the rules every VLGuard figure is in-sample.
    """
    data_dir = Path(data_dir)
    path = data_dir / f"{split}.json"
    if not path.is_file():
        raise DataValidationError([Problem(str(path), "", "", "file not found")])
    out: list[LabelledResponse] = []
    for record in json.loads(path.read_text(encoding="utf-8")):
        part = vlguard_split(split, record["id"])
        for k, pair in enumerate(record["instr-resp"]):
            if not record["safe"]:
                group, label = "unsafe image", "refusal"
            elif "unsafe_instruction" in pair:
                group, label = "unsafe_instruction", "refusal"
            else:
                group, label = "safe_instruction", "compliance"
            prompt = (
                pair.get("instruction")
                or pair.get("safe_instruction")
                or pair.get("unsafe_instruction")
                or ""
            )
            out.append(
                LabelledResponse(
                    id=f"vlguard-{split}/{record['id']}/{k}",
                    prompt=prompt,
                    response=pair["response"],
                    label=label,
                    source=f"vlguard-{split}",
                    group=group,
                    split=part,
                )
            )
    references = data_dir / "gpt4_safe_safes.json"
    if split == "test" and references.is_file():
        for k, ref in enumerate(json.loads(references.read_text(encoding="utf-8"))):
            part = vlguard_split(split, str(ref["id"]))
            out.append(
                LabelledResponse(
                    id=f"vlguard-test/gpt4/{k}",
                    prompt=ref.get("instruction", ""),
                    response=ref["response"],
                    label="compliance",
                    source="vlguard-test",
                    group="gpt4_safe_safes",
                    split=part,
                )
            )
    return out
