"""The defences compared in a harmful fine-tuning sweep: what a cell trains on, given the user's set.

How the harmful fine-tuning literature implements "VLGuard" as a fine-tuning-stage defence:

* ``vlguard-mix``: k safety pairs are added to the user's n samples (Vaccine, GitHub
  ``git-disl/Vaccine``, ``train.py``: ``--guide_data_num``, default 100, BeaverTails safe pairs
  appended to the poisoned set);
* ``vlguard-replace``: k safety pairs replace k benign samples, so the total stays n (Lisa, GitHub
  ``git-disl/Lisa``, ``train.py``: ``normal_num = (1 - p) × n - finetuning_guide_data_num``);
* ``vlguard-aux``: the user's set alone, plus λ × the loss on a batch of safety pairs at every step
  (Booster, GitHub ``git-disl/Booster``, ``VlguardTrainer``; see ``vlguard.train.safety_loss``);
* ``sft``: the undefended baseline, plain supervised fine-tuning on the user's set.

``DEFENCES`` is a plain dict; each entry turns a :class:`~vlguard.hft.data.UserSet` (and the safety
pool) into a :class:`CellData`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vlguard.errors import ConfigError
from vlguard.hft.data import Pair, PairPool, UserSet, counts, draw


@dataclass(frozen=True)
class DefenceSettings:
    """The defence knobs of a sweep (``defence.*`` in the config)."""

    n_safety: int = 100
    aux_n_safety: int = 2000
    aux_weight: float = 0.1
    aux_batch_size: int = 4


@dataclass(frozen=True)
class CellData:
    """What one cell trains on: the training pairs, and the auxiliary safety pairs (``vlguard-aux``)."""

    defence: str
    train: tuple[Pair, ...]
    aux_safety: tuple[Pair, ...] = ()
    aux_weight: float = 0.0
    aux_batch_size: int = 4

    @property
    def counts(self) -> dict[str, int]:
        """Training pairs per role (task / harmful / safety); the auxiliary pairs under ``aux_safety``."""
        found = counts(self.train)
        if self.aux_safety:
            found["aux_safety"] = len(self.aux_safety)
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


@dataclass(frozen=True)
class Defence:
    """A registered defence: a one-line description, whether it needs safety data, and how it applies."""

    description: str
    needs_safety: bool
    apply: Callable[[UserSet, PairPool | None, DefenceSettings, int], CellData]


DEFENCES: dict[str, Defence] = {
    "sft": Defence("undefended: supervised fine-tuning on the user's set as given", False, _undefended),
    "vlguard-mix": Defence(
        "VLGuard as in Vaccine: k safety pairs added to the user's n samples (n + k in all)", True, _mix_added
    ),
    "vlguard-replace": Defence(
        "VLGuard as in Lisa: k safety pairs replace k benign samples (n in all)", True, _mix_replacing
    ),
    "vlguard-aux": Defence(
        "VLGuard as in Booster: λ × the loss on a batch of safety pairs at every step", True, _auxiliary_loss
    ),
}


def apply_defence(
    name: str, user: UserSet, safety: PairPool | None, settings: DefenceSettings, seed: int
) -> CellData:
    """The training data of a cell with defence ``name`` (``ConfigError`` for an unknown name)."""
    try:
        defence = DEFENCES[name]
    except KeyError:
        raise ConfigError(f"unknown defence {name!r}; known: {', '.join(DEFENCES)}") from None
    return defence.apply(user, safety, settings, seed)
