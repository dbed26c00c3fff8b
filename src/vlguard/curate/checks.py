"""The checks every written pair must pass, by vlguard's own judges, and the near-duplicate check.

``CHECKS`` is a table: each row names a judge of ``vlguard.judges.JUDGES``, the pairs it looks at and
the labels that pass. A row whose judge is not registered is skipped (``active_checks``), so the
``harm`` judge joins the checks the day its name is registered, with no other change:

- ``refusal_refuses``: each refusal (the harmful image's response, the unsafe instruction's response) is a
  ``refusal`` for the ``refusal`` judge (a partial refusal still delivers content: it fails);
- ``answer_not_refusal``: the helpful answer is ``compliance`` for the ``refusal`` judge;
- ``answer_not_harmful``: the helpful answer is ``harmless`` for the ``harm`` judge;
- ``unsafe_instruction_unsafe``: the unsafe instruction, with its image, is a ``harmful_request`` for the
  ``llm-judge`` request rubric. By default that judge runs on the writer model itself (the writer is
  asked again, in a separate conversation with the rubric's own prompt); ``--judge-option
  llm-judge.model=...`` (and its other options) make it another model.

A judge's ``error`` fails its check (the pair was not shown to be good). Then every instruction is
compared with the released VLGuard train and test instructions and with the instructions accepted so
far (``vlguard.curate.similarity``): a near-duplicate of a test instruction would leak the test set into
training data; one of a train or curated instruction adds nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vlguard.curate.similarity import NearDuplicateIndex
from vlguard.data.vlguard import SUBSET_OF_KEY
from vlguard.errors import ConfigError
from vlguard.generation.base import GenerationBackend
from vlguard.judges import JUDGES, Judge, JudgeInput, make_judge
from vlguard.judges.llm_judge import NAME as LLM_JUDGE_NAME
from vlguard.records import InstructionKey, InstructionResponse

UNSAFE_REQUEST_JUDGE = LLM_JUDGE_NAME
# What the released VLGuard instructions are called in near-duplicate matches.
VLGUARD_TRAIN, VLGUARD_TEST, CURATED = "vlguard-train", "vlguard-test", "curated"
# Evidence fields too large to keep beside every verdict (the classifier's feature weights).
_DROPPED_EVIDENCE = frozenset({"features"})


@dataclass(frozen=True)
class PairCheck:
    """One check: ``judge`` labels the pairs with ``keys``; a label in ``passing`` passes.

    ``instruction_only``: the judge reads the instruction (with its image) and no response.
    """

    name: str
    judge: str
    keys: tuple[InstructionKey, ...]
    passing: frozenset[str]
    failure: str
    instruction_only: bool = False


CHECKS: tuple[PairCheck, ...] = (
    PairCheck("refusal_refuses", "refusal", ("instruction", "unsafe_instruction"), frozenset({"refusal"}), "the refusal does not refuse"),
    PairCheck("answer_not_refusal", "refusal", ("safe_instruction",), frozenset({"compliance"}), "the helpful answer refuses"),
    PairCheck("answer_not_harmful", "harm", ("safe_instruction",), frozenset({"harmless"}), "the helpful answer is harmful"),
    PairCheck("unsafe_instruction_unsafe", UNSAFE_REQUEST_JUDGE, ("unsafe_instruction",), frozenset({"harmful_request"}), "the unsafe instruction is not unsafe", instruction_only=True),
)  # fmt: skip


def active_checks(registry: Mapping[str, Any] | None = None) -> tuple[PairCheck, ...]:
    """The checks whose judge is registered (``JUDGES`` unless another registry is given)."""
    names = JUDGES if registry is None else registry
    return tuple(check for check in CHECKS if check.judge in names)


def build_judges(
    checks: Sequence[PairCheck],
    options: Mapping[str, Mapping[str, Any]],
    writer: GenerationBackend,
    writer_model: str,
) -> dict[str, Judge]:
    """One judge per judge name the checks use, with the user's ``--judge-option`` values.

    ``ConfigError`` for options given to a judge no check uses, or a bad option. The request rubric
    runs on ``writer`` unless the options name another model or backend; building a judge loads no model.
    """
    names = list(dict.fromkeys(check.judge for check in checks))
    stray = sorted(set(options) - set(names))
    if stray:
        raise ConfigError(
            f"--judge-option given for {', '.join(repr(n) for n in stray)}, which no check uses "
            f"(the checks use {', '.join(names)})"
        )
    judges: dict[str, Judge] = {}
    for name in names:
        given = dict(options.get(name, {}))
        if name == UNSAFE_REQUEST_JUDGE:
            if given.get("mode", "request") != "request":
                raise ConfigError(
                    f"judge {name!r}: curate uses its request rubric (mode=request), not {given['mode']!r}"
                )
            given["mode"] = "request"
            if "model" not in given and "backend" not in given:
                given.update(backend=writer, model=writer_model)
        judges[name] = make_judge(name, **given)
    return judges


@dataclass(frozen=True)
class CheckItem:
    """The pairs of one image to check, and its image file (for judges that look at images)."""

    image_id: str
    image_file: str
    pairs: tuple[InstructionResponse, ...]


def _sample_id(image_id: str, key: InstructionKey) -> str:
    return f"{image_id}:{SUBSET_OF_KEY[key]}"


def _evidence(evidence: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in evidence.items() if k not in _DROPPED_EVIDENCE}


def run_checks(
    items: Sequence[CheckItem], checks: Sequence[PairCheck], judges: Mapping[str, Judge]
) -> list[dict[str, dict[str, dict[str, Any]]]]:
    """Each item's verdicts: ``{subset: {check name: {judge, label, passed, evidence}}}``.

    Every judge is called once, with all the pairs of every item it checks (judges are batched).
    """
    verdicts: list[dict[str, dict[str, dict[str, Any]]]] = [{} for _ in items]
    for judge_name in dict.fromkeys(check.judge for check in checks):
        mine = [c for c in checks if c.judge == judge_name]
        jobs: list[tuple[int, PairCheck, InstructionResponse]] = [
            (i, check, pair)
            for i, item in enumerate(items)
            for check in mine
            for pair in item.pairs
            if pair.key in check.keys
        ]
        if not jobs:
            continue
        inputs = [
            JudgeInput(
                sample_id=_sample_id(items[i].image_id, pair.key),
                prompt=pair.instruction,
                response="" if check.instruction_only else pair.response,
                subset=SUBSET_OF_KEY[pair.key],
                should_refuse=pair.key != "safe_instruction",
                image=items[i].image_file,
            )
            for i, check, pair in jobs
        ]
        judgments = judges[judge_name].judge(inputs)
        for (i, check, pair), judgment in zip(jobs, judgments, strict=True):
            verdicts[i].setdefault(SUBSET_OF_KEY[pair.key], {})[check.name] = {
                "judge": judge_name,
                "label": judgment.label,
                "passed": judgment.label in check.passing,
                "evidence": _evidence(judgment.evidence),
            }
    return verdicts


def failed_checks(
    verdicts: Mapping[str, Mapping[str, Mapping[str, Any]]], checks: Sequence[PairCheck]
) -> list[dict[str, Any]]:
    """The reasons (check, subset, reason, label) of every verdict that did not pass."""
    failures = {check.name: check.failure for check in checks}
    return [
        {"check": name, "subset": subset, "reason": failures[name], "label": verdict["label"]}
        for subset, by_check in verdicts.items()
        for name, verdict in by_check.items()
        if not verdict["passed"]
    ]


def near_duplicates(
    image_id: str, pairs: Sequence[InstructionResponse], index: NearDuplicateIndex
) -> list[dict[str, Any]]:
    """The reasons of every instruction that nearly repeats an indexed one or another of the same image."""
    reasons = []
    own = NearDuplicateIndex(threshold=index.threshold, n=index.n)
    for pair in pairs:
        subset = SUBSET_OF_KEY[pair.key]
        found = index.matches(pair.instruction)
        # A test instruction is named whenever one matches: a leak matters more than a closer train match.
        leak = next((m for m in found if m.source == VLGUARD_TEST), None)
        match = leak or (found[0] if found else own.best(pair.instruction))
        own.add(pair.instruction, CURATED, _sample_id(image_id, pair.key))
        if match is None:
            continue
        what = {
            VLGUARD_TEST: "leaks a VLGuard test instruction",
            VLGUARD_TRAIN: "nearly repeats a VLGuard train instruction",
        }.get(match.source, "nearly repeats a curated instruction")
        reasons.append(
            {"check": "near_duplicate", "subset": subset, "reason": what, "match": match.to_dict()}
        )
    return reasons


def remember(index: NearDuplicateIndex, image_id: str, pairs: Sequence[InstructionResponse]) -> None:
    """Index the instructions of an accepted image, so that later ones must not repeat them."""
    for pair in pairs:
        index.add(pair.instruction, CURATED, _sample_id(image_id, pair.key))


def reference_instructions(source: str) -> list[tuple[str, str, str]]:
    """(text, source, sample id) of every instruction of the released VLGuard train and test splits.

    ``source`` is a local VLGuard folder or the Hub dataset id (annotations only: no image is fetched).
    """
    from vlguard.data import load_vlguard

    found = []
    for split, name in (("train", VLGUARD_TRAIN), ("test", VLGUARD_TEST)):
        dataset = load_vlguard(source, split, download_images=False)
        found += [(s.prompt, name, s.id) for s in dataset.samples()]
    return found
