"""The defences compared in a harmful fine-tuning sweep: how a cell's start model and training are made.

Two kinds, by the stage they act in:

* **fine-tuning stage** (what a cell trains on, and how, given the user's set):

  - ``sft``: the undefended baseline, plain supervised fine-tuning on the user's set;
  - ``vlguard-mix``: k safety pairs are added to the user's n samples (Vaccine, GitHub
    ``git-disl/Vaccine``, ``train.py``: ``--guide_data_num``, default 100, BeaverTails safe pairs
    appended to the poisoned set);
  - ``vlguard-replace``: k safety pairs replace k benign samples, so the total stays n (Lisa, GitHub
    ``git-disl/Lisa``, ``train.py``: ``normal_num = (1 - p) × n - finetuning_guide_data_num``);
  - ``vlguard-aux``: the user's set alone, plus λ × the loss on a batch of safety pairs at every step
    (Booster, GitHub ``git-disl/Booster``, ``VlguardTrainer``; see ``vlguard.train.safety_loss``);
  - ``lisa``: the user's set alone, trained with Lisa's bi-state rule (alignment steps on
    ``defence.lisa.n_safety`` safety pairs in between, a proximal term; ``vlguard.train.defences.lisa``);

* **alignment stage** (how the model the users fine-tune is aligned; needs ``alignment.enabled``):
  ``vaccine``, ``booster``, ``repnoise``: the alignment stage trained with that rule
  (``vlguard.train.defences``) on the alignment data, in its own folder (``alignment-booster/``);
  booster and repnoise also draw ``n_harmful`` harmful pairs, disjoint from every user set's.

A ``defences`` entry is one defence, or an alignment-stage defence and a fine-tuning-stage one joined
by ``+``, alignment first: ``booster+vlguard-mix`` aligns with Booster, then fine-tunes the user's set
with VLGuard's safety pairs mixed in; ``vaccine+lisa`` aligns with Vaccine and fine-tunes with Lisa.
An alignment-stage defence alone (``booster``) is followed by plain fine-tuning (``sft``).

``DEFENCES`` is a plain dict; each fine-tuning-stage entry turns a :class:`~vlguard.hft.data.UserSet`
(and the safety pool) into a :class:`CellData`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from vlguard.errors import ConfigError
from vlguard.hft.data import Pair, PairPool, UserSet, counts, draw

ALIGNMENT_STAGE: Final = "alignment"
FINETUNE_STAGE: Final = "finetune"


@dataclass(frozen=True)
class DefenceSettings:
    """The data knobs of the defences (``defence.*`` in the config)."""

    n_safety: int = 100
    aux_n_safety: int = 2000
    aux_weight: float = 0.1
    aux_batch_size: int = 4
    lisa_n_safety: int = 10000


@dataclass(frozen=True)
class CellData:
    """What one cell trains on: the training pairs, the auxiliary safety pairs (``vlguard-aux``), and the
    training rule with its own pairs (``lisa``: the alignment pairs of its alignment steps)."""

    defence: str
    train: tuple[Pair, ...]
    aux_safety: tuple[Pair, ...] = ()
    aux_weight: float = 0.0
    aux_batch_size: int = 4
    rule: str | None = None
    rule_pairs: tuple[Pair, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        """Training pairs per role (task / harmful / safety); the auxiliary pairs under ``aux_safety``, the
        rule's under ``rule_safety``."""
        found = counts(self.train)
        if self.aux_safety:
            found["aux_safety"] = len(self.aux_safety)
        if self.rule_pairs:
            found["rule_safety"] = len(self.rule_pairs)
        return found


def _undefended(user: UserSet, safety: PairPool | None, settings: DefenceSettings, seed: int) -> CellData:
    return CellData("sft", user.pairs)


def _require(safety: PairPool | None, defence: str) -> PairPool:
    if safety is None:
        raise ConfigError(f"defence {defence!r} needs safety data (the safety.* section)")
    return safety


def _mix_added(user: UserSet, safety: PairPool | None, settings: DefenceSettings, seed: int) -> CellData:
    guide = draw(_require(safety, "vlguard-mix"), settings.n_safety, seed)
    return CellData("vlguard-mix", user.pairs + tuple(guide))


def _mix_replacing(user: UserSet, safety: PairPool | None, settings: DefenceSettings, seed: int) -> CellData:
    k = settings.n_safety
    if k > len(user.task):
        raise ConfigError(
            f"defence 'vlguard-replace': defence.n_safety={k} safety pairs cannot replace benign samples: "
            f"the user set has only {len(user.task)} at harmful ratio {user.ratio}"
        )
    guide = draw(_require(safety, "vlguard-replace"), k, seed)
    # The task draw is prefix-stable: dropping its last k keeps the benign samples of smaller cells.
    kept = user.task[: len(user.task) - k]
    return CellData("vlguard-replace", kept + user.harmful + tuple(guide))


def _auxiliary_loss(user: UserSet, safety: PairPool | None, settings: DefenceSettings, seed: int) -> CellData:
    if settings.aux_weight <= 0:
        raise ConfigError(f"defence 'vlguard-aux' needs defence.aux_weight > 0, got {settings.aux_weight}")
    guide = draw(_require(safety, "vlguard-aux"), settings.aux_n_safety, seed)
    return CellData(
        "vlguard-aux",
        user.pairs,
        aux_safety=tuple(guide),
        aux_weight=settings.aux_weight,
        aux_batch_size=settings.aux_batch_size,
    )


def _bi_state(user: UserSet, safety: PairPool | None, settings: DefenceSettings, seed: int) -> CellData:
    # Lisa's alignment data: the first guide_data_num BeaverTails safe rows (Lisa train.py:432 with
    # lisa_poison_ratio.sh:17), here a prefix of the safety pool's permutation like every safety draw.
    guide = draw(_require(safety, "lisa"), settings.lisa_n_safety, seed)
    return CellData("lisa", user.pairs, rule="lisa", rule_pairs=tuple(guide))


@dataclass(frozen=True)
class Defence:
    """A registered defence: a one-line description, its stage, the pools it needs, and how it applies.

    ``apply`` (fine-tuning stage) builds a cell's training data; ``rule`` names the ``vlguard train``
    training rule (``defence.name``) of the stage it acts in.
    """

    description: str
    stage: Literal["alignment", "finetune"]
    needs_safety: bool = False
    needs_harmful: bool = False
    apply: Callable[[UserSet, PairPool | None, DefenceSettings, int], CellData] | None = None
    rule: str | None = None


DEFENCES: dict[str, Defence] = {
    "sft": Defence("undefended: supervised fine-tuning on the user's set as given", FINETUNE_STAGE, apply=_undefended),
    "vlguard-mix": Defence(
        "VLGuard as in Vaccine: k safety pairs added to the user's n samples (n + k in all)",
        FINETUNE_STAGE, needs_safety=True, apply=_mix_added,
    ),
    "vlguard-replace": Defence(
        "VLGuard as in Lisa: k safety pairs replace k benign samples (n in all)",
        FINETUNE_STAGE, needs_safety=True, apply=_mix_replacing,
    ),
    "vlguard-aux": Defence(
        "VLGuard as in Booster: λ × the loss on a batch of safety pairs at every step",
        FINETUNE_STAGE, needs_safety=True, apply=_auxiliary_loss,
    ),
    "lisa": Defence(
        "Lisa: alignment and user steps in turn, with a proximal term to the other state's weights",
        FINETUNE_STAGE, needs_safety=True, apply=_bi_state, rule="lisa",
    ),
    "vaccine": Defence(
        "Vaccine: alignment under ρ-scaled adversarial perturbations of the attention outputs",
        ALIGNMENT_STAGE, rule="vaccine",
    ),
    "booster": Defence(
        "Booster: alignment + λ × (harmful loss - harmful loss after a normalised harmful step of size α)",
        ALIGNMENT_STAGE, needs_harmful=True, rule="booster",
    ),
    "repnoise": Defence(
        "RepNoise: alignment that noises the representations of harmful text and ascends its loss",
        ALIGNMENT_STAGE, needs_harmful=True, rule="repnoise",
    ),
}  # fmt: skip

COMPOSITION = "+"


@dataclass(frozen=True)
class DefencePlan:
    """A ``defences`` entry read: its alignment-stage defence (or None) and its fine-tuning-stage one."""

    name: str
    alignment: str | None
    finetune: str

    @property
    def parts(self) -> tuple[str, ...]:
        """The defences named, alignment first."""
        return (self.alignment, self.finetune) if self.alignment else (self.finetune,)

    @property
    def needs_safety(self) -> bool:
        """Whether a cell of this entry draws from the safety pool."""
        return any(DEFENCES[p].needs_safety for p in self.parts)

    @property
    def needs_harmful(self) -> bool:
        """Whether its alignment draws harmful pairs (booster, repnoise)."""
        return any(DEFENCES[p].needs_harmful for p in self.parts)


def parse_defence(name: str) -> DefencePlan:
    """``"booster+vlguard-mix"`` → its plan; ``ConfigError`` for an unknown name or a composition that is not
    one alignment-stage defence + one fine-tuning-stage defence, alignment first."""
    parts = name.split(COMPOSITION)
    for part in parts:
        if part not in DEFENCES:
            raise ConfigError(f"unknown defence {part!r}; known: {', '.join(DEFENCES)} (joined with '+')")
    if len(parts) == 1:
        stage = DEFENCES[name].stage
        return DefencePlan(
            name, name if stage == ALIGNMENT_STAGE else None, "sft" if stage == ALIGNMENT_STAGE else name
        )
    aligning = [p for p in DEFENCES if DEFENCES[p].stage == ALIGNMENT_STAGE]
    tuning = [p for p in DEFENCES if DEFENCES[p].stage == FINETUNE_STAGE and p != "sft"]
    first, second = parts if len(parts) == 2 else ("", "")
    if first not in aligning or second not in tuning:
        raise ConfigError(
            f"defence {name!r}: a composition is one alignment-stage defence ({', '.join(aligning)}) then '+' "
            f"and one fine-tuning-stage defence ({', '.join(tuning)}), e.g. booster+vlguard-mix"
        )
    return DefencePlan(name, first, second)


def apply_defence(
    name: str, user: UserSet, safety: PairPool | None, settings: DefenceSettings, seed: int
) -> CellData:
    """The training data of a cell with defence ``name`` (``ConfigError`` for an unknown name): its
    fine-tuning-stage part applied to the user's set (an alignment-stage defence changes the start model)."""
    plan = parse_defence(name)
    apply = DEFENCES[plan.finetune].apply
    assert apply is not None
    return dataclasses.replace(apply(user, safety, settings, seed), defence=name)
