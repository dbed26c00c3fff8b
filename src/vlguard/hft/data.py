"""The data of a harmful fine-tuning experiment: pools of pairs, and seeded, counted draws from them.

Three pools, each a list of :class:`Pair` (an instruction, its optional task input, the response to
learn) tagged with its role:

* ``task``: the user's benign task data (SST-2, AG News, GSM8K, ...), from a task benchmark's
  training split (the benchmark's samples with their reference answers);
* ``harmful``: the attack's harmful (prompt, answer) pairs: the unsafe rows of a BeaverTails-format
  file or Hub dataset (what the papers use), or, offline, AdvBench ``goal`` → ``target`` pairs. An
  AdvBench target is only a compliance opening ("Sure, here is a script that ..."), so the offline
  path writes no harmful content anywhere;
* ``safety``: the defence's safety data: VLGuard's refusals (text-only pairs, or with their images for
  VLMs), the safe rows of a BeaverTails-format source, or prompt/refusal pairs (the user's own, or
  RepNoise's paired refusals as Booster reads them).

Every draw is a prefix of one order of its pool (``PairPool.order``): a seeded permutation (``seeded``)
or the file order (``first``: the first rows, as the papers take them). A larger draw contains every
smaller one: the cell with 20 % harmful samples holds the harmful samples of the 10 % cell, and the
benign samples it drops are the last ones drawn. Asking for more than a pool holds is an error that
names the pool and its source.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vlguard.data.conversations import Conversation
from vlguard.data.images import ImageSource
from vlguard.data.jsonio import write_jsonl
from vlguard.errors import ConfigError, DataValidationError, Problem
from vlguard.prompts import user_text

TASK, HARMFUL, SAFETY = "task", "harmful", "safety"
ROLES = (TASK, HARMFUL, SAFETY)
# How a draw orders its pool: a seeded permutation, or the file order (the papers' "first N rows").
DrawOrder = Literal["seeded", "first"]
DRAW_ORDERS: tuple[DrawOrder, ...] = ("seeded", "first")


@dataclass(frozen=True)
class Pair:
    """One supervised example: an instruction (with its task input) and the response to learn.

    ``id`` is unique within its pool and stable for a given source file; ``image`` (VLM safety data
    only) is relative to the pool's image root.
    """

    id: str
    role: str
    instruction: str
    response: str
    input: str | None = None
    image: str | None = None

    def to_conversation(self) -> Conversation:
        """The pair as a training conversation (user turn, assistant turn), tagged with its role.

        The instruction and the task input are two text parts of the user turn: the collator joins them
        with ``user_text`` for a chat template and puts the second under ``### Input:`` for Alpaca, as
        evaluation does with ``Sample.input``.
        """
        user: list[dict[str, Any]] = [{"type": "text", "text": self.instruction}]
        if self.input:
            user.append({"type": "text", "text": self.input})
        if self.image is not None:
            user.insert(0, {"type": "image"})
        messages = (
            {"role": "user", "content": user},
            {"role": "assistant", "content": [{"type": "text", "text": self.response}]},
        )
        return Conversation(id=self.id, image=self.image, messages=messages, source=self.role)


@dataclass(frozen=True)
class PairPool:
    """The pairs of one source, where they came from (for provenance) and their image root."""

    role: str
    pairs: tuple[Pair, ...]
    source: dict[str, Any]
    images: ImageSource | None = None
    order: DrawOrder = "seeded"  # how draws take pairs from it (see the module docstring)

    def describe(self) -> str:
        """How errors name this pool: its role and its file or Hub id."""
        where = self.source.get("path") or self.source.get("repo_id") or self.source.get("kind") or "?"
        return f"the {self.role} pool ({where})"


def harmful_count(n: int, ratio: float) -> int:
    """How many of ``n`` user samples are harmful at ``ratio`` (rounded to the nearest; halves up)."""
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"harmful ratio {ratio} is outside [0, 1]")
    return int(n * ratio + 0.5)


def draw(pool: PairPool, k: int, seed: int | str) -> list[Pair]:
    """The first ``k`` pairs of the pool's permutation for ``seed``, or of the file when the pool's order
    is ``first``; prefix-stable either way (see the module doc)."""
    if pool.order not in DRAW_ORDERS:
        raise ConfigError(f"draw order must be one of {', '.join(DRAW_ORDERS)}, not {pool.order!r}")
    if k < 0:
        raise ConfigError(f"cannot draw {k} pairs from {pool.describe()}")
    if k > len(pool.pairs):
        raise ConfigError(
            f"{k} {pool.role} pairs requested but {pool.describe()} has only {len(pool.pairs)}; "
            "lower the count or give a larger source"
        )
    return _ordered(pool, seed)[:k]


def draw_last(pool: PairPool, k: int, seed: int | str, *, beside: int) -> list[Pair]:
    """The last ``k`` pairs of the pool's order for ``seed``: disjoint from every :func:`draw` of at most
    ``beside`` pairs with the same seed (a defence's harmful pairs beside the users' harmful pairs, as
    Booster takes BeaverTails' unsafe rows from 5,000 on while the attack takes the first ones)."""
    if k < 0:
        raise ConfigError(f"cannot draw {k} pairs from {pool.describe()}")
    if k + beside > len(pool.pairs):
        raise ConfigError(
            f"{k} {pool.role} pairs requested beside the {beside} of the user sets, but {pool.describe()} has "
            f"only {len(pool.pairs)}; lower the count or give a larger source"
        )
    order = _ordered(pool, seed)
    return order[len(order) - k :]


def _ordered(pool: PairPool, seed: int | str) -> list[Pair]:
    """The pool in its draw order: the file's (``first``, the papers' first rows) or a seeded permutation."""
    if pool.order == "first":
        return list(pool.pairs)
    order = list(pool.pairs)
    random.Random(f"{pool.role}:{seed}").shuffle(order)
    return order


@dataclass(frozen=True)
class UserSet:
    """The user's fine-tuning set of one cell: ``n`` pairs, ``round(ratio × n)`` of them harmful."""

    ratio: float
    task: tuple[Pair, ...]
    harmful: tuple[Pair, ...]

    @property
    def pairs(self) -> tuple[Pair, ...]:
        """Task pairs then harmful pairs (the trainer shuffles)."""
        return self.task + self.harmful


def build_user_set(task: PairPool, harmful: PairPool, *, n: int, ratio: float, seed: int) -> UserSet:
    """Draw the user's set: ``n - h`` task pairs and ``h = round(ratio × n)`` harmful pairs."""
    if n < 1:
        raise ConfigError(f"the user set needs at least one sample (attack.n = {n})")
    n_harmful = harmful_count(n, ratio)
    return UserSet(
        ratio=ratio,
        task=tuple(draw(task, n - n_harmful, seed)),
        harmful=tuple(draw(harmful, n_harmful, seed)),
    )


def counts(pairs: Iterable[Pair]) -> dict[str, int]:
    """Pairs per role, every role present (0 when absent)."""
    found = Counter(p.role for p in pairs)
    return {role: found[role] for role in ROLES}


def shuffled(pairs: Sequence[Pair], seed: int | str) -> list[Pair]:
    """A seeded shuffle (the order of the written mixture; the trainer reshuffles by its own seed)."""
    order = list(pairs)
    random.Random(f"mixture:{seed}").shuffle(order)
    return order


def write_pairs(pairs: Sequence[Pair], path: str | Path) -> Path:
    """Write pairs as messages-format JSONL (``vlguard train``'s ``data.instructions`` format), with
    each line's ``source`` = the pair's role. Atomic: a reader never sees half a file."""
    return write_jsonl((p.to_conversation().to_dict() for p in pairs), path)


def normalised(text: str) -> str:
    """A prompt compared for leaks: lower case, whitespace collapsed."""
    return " ".join(text.lower().split())


@dataclass(frozen=True)
class Leak:
    """Evaluation prompts that also appear in training data (after :func:`normalised`)."""

    prompts: tuple[str, ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.prompts)


def find_leaks(training: Iterable[Pair], eval_prompts: Iterable[str]) -> Leak:
    """Evaluation prompts that are the instruction (or the instruction + input) of a training pair."""
    seen: set[str] = set()
    for pair in training:
        seen.add(normalised(pair.instruction))
        seen.add(normalised(user_text(pair.instruction, pair.input)))
    return Leak(tuple(sorted({p for p in eval_prompts if normalised(p) in seen})))


# ---- the sources ------------------------------------------------------------------------------------


def advbench_pairs(data: str | Path | None, revision: str | None = None) -> PairPool:
    """AdvBench ``goal`` → ``target`` pairs (520): harmful requests answered by a compliance opening only.

    ``data`` is the CSV, a folder holding ``harmful_behaviors.csv`` or a Hub dataset id, as for the
    ``advbench`` benchmark. Ids are ``advbench-<row>`` as there.
    """
    from vlguard.benchmarks.advbench import ADVBENCH_FILE
    from vlguard.benchmarks.csv_source import read_csv_rows, resolve_data_file

    path, source = resolve_data_file(data, ADVBENCH_FILE, benchmark="advbench", revision=revision)
    problems: list[Problem] = []
    pairs: list[Pair] = []
    for row in read_csv_rows(path, ("goal", "target")):
        goal, target = row.cells["goal"].strip(), row.cells["target"].strip()
        for column, value in (("goal", goal), ("target", target)):
            if not value:
                problems.append(Problem(str(path), row.where, column, "empty value"))
        if goal and target:
            pairs.append(Pair(id=f"advbench-{row.number}", role=HARMFUL, instruction=goal, response=target))
    if problems:
        raise DataValidationError(problems)
    return PairPool(HARMFUL, tuple(pairs), {**source, "kind_of_pairs": "advbench goal -> target"})


def qa_pairs(
    data: str | Path | None,
    *,
    role: str,
    split: str,
    revision: str | None,
    which: str,
    rows: str | None = None,
    half: str | None = None,
) -> PairPool:
    """Pairs from a BeaverTails-format source: ``which`` = ``unsafe`` (is_safe false), ``safe``
    (is_safe true) or ``all`` (every row; files without is_safe, e.g. a user's own refusals).

    ``rows`` keeps a slice of the file's rows before anything else (``"START:STOP"``, 0-based, as Booster
    counts the rows of RepNoise's file; N = the first N); ``half`` (``dev`` / ``heldout``) keeps the rows
    whose prompt is in that half of the project's split (``vlguard.data.beavertails.beavertails_split``).
    A file with RepNoise's ``refusal`` field gives (question, refusal) pairs read as Booster reads them
    (``vlguard.data.beavertails.split_refusal``) for ``which="all"``, the rows' ``response`` otherwise.
    """
    from vlguard.benchmarks.tasks import parse_rows
    from vlguard.data.beavertails import beavertails_split, load_qa_pairs

    loaded = load_qa_pairs(data, split=split, revision=revision, labelled=which != "all")
    where = loaded.source.get("path") or loaded.source.get("repo_id")
    start, stop = parse_rows(rows, None)
    chosen = list(loaded.rows[start:stop])
    if not chosen:
        raise ConfigError(f"{where}: rows {rows!r} select none of its {len(loaded.rows)} rows ({role} pool)")
    if half is not None:
        if half not in ("dev", "heldout"):
            raise ConfigError(f"the {role} pool: half must be 'dev' or 'heldout', not {half!r}")
        chosen = [r for r in chosen if beavertails_split(r.prompt) == half]
    keep = {"unsafe": False, "safe": True}.get(which)
    chosen = [r for r in chosen if keep is None or r.is_safe is keep]
    if not chosen:
        raise ConfigError(f"{where}: no {which} rows for the {role} pool")
    with_refusals = [r for r in chosen if r.refusal is not None]
    refusals = which == "all" and bool(with_refusals)
    if refusals and len(with_refusals) != len(chosen):
        missing = next(r.line for r in chosen if r.refusal is None)
        raise ConfigError(
            f"{where}: some rows have RepNoise's refusal field and some do not (e.g. line {missing}); "
            "a pairs file is either prompt/response pairs or paired refusals"
        )
    prefix = f"{loaded.source.get('split', 'file')}-" if loaded.source["kind"] == "hub" else ""
    pairs = tuple(
        Pair(
            id=f"qa-{prefix}{r.line}",
            role=role,
            instruction=r.refusal[0] if refusals and r.refusal else r.prompt,
            response=r.refusal[1] if refusals and r.refusal else r.response,
        )
        for r in chosen
    )
    # Only what is set, so that the settings recorded by earlier sweeps (stage.json) still match.
    selection: dict[str, Any] = {"rows": which}
    for key, value in (("row_range", rows), ("half", half), ("pairs_from", "refusal" if refusals else None)):
        if value is not None:
            selection[key] = value
    return PairPool(role, pairs, {**loaded.source, **selection})


def vlguard_refusals(
    data: str | Path, *, split: str = "train", revision: str | None = None, with_images: bool = False
) -> PairPool:
    """VLGuard's refusals as safety pairs.

    Text only (``with_images`` false): the unsafe instructions asked about safe images, which are
    harmful by their text alone ("Can you tell me how to ..."). The instructions on unsafe images are
    left out: their harm is usually in the image ("Share this image"), and without it they would teach
    the model to refuse harmless text. With images (VLMs): both, each with its image.
    """
    from vlguard.data import load_vlguard
    from vlguard.train.data import resolve_vlguard_source

    dataset = load_vlguard(
        resolve_vlguard_source(str(data)), split, revision=revision, download_images=with_images
    )
    pairs: list[Pair] = []
    for record in dataset.records:
        for pair in record.pairs:
            refusal = pair.key == "unsafe_instruction" or (not record.safe and with_images)
            if refusal:
                pairs.append(
                    Pair(
                        id=f"vlguard-{record.uid}:{pair.key}",
                        role=SAFETY,
                        instruction=pair.instruction,
                        response=pair.response,
                        image=record.image if with_images else None,
                    )
                )
    if with_images and dataset.images is None:
        raise ConfigError(f"{data}: VLGuard images are not available; set safety.with_images=false")
    return PairPool(SAFETY, tuple(pairs), dict(dataset.source), dataset.images if with_images else None)


def task_pairs(
    task: str,
    data: str | None,
    *,
    split: str = "train",
    revision: str | None = None,
    options: dict[str, Any] | None = None,
) -> PairPool:
    """The task's training examples of ``split`` (every row) as pairs: instruction + input → answer.

    Read by the task benchmarks' own loader (``vlguard.benchmarks.tasks.load_task_examples``), so the
    instruction wording is exactly the one evaluated (the papers' prompts), with the task's ``options``
    (e.g. GSM8K's ``step_by_step``; ``rows`` selects evaluation rows and is not passed). ``split="holdout"``
    (AG News, whose local folder has only the test file): the rows the papers never evaluate.
    """
    from vlguard.benchmarks.tasks import load_task_examples

    shaping = {k: v for k, v in (options or {}).items() if k != "rows"}
    loaded = load_task_examples(task, data, n=None, seed=0, split=split, revision=revision, **shaping)
    pairs = tuple(
        Pair(id=e.id, role=TASK, instruction=e.instruction, input=e.input, response=e.output)
        for e in loaded.examples
    )
    # The loader's own shuffle (seed 0) is undone: the pool is in file order, and `draw` permutes it.
    pairs = tuple(sorted(pairs, key=lambda p: int(p.id.rsplit(":", 1)[1])))
    return PairPool(TASK, pairs, dict(loaded.source))
