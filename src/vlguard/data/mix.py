"""Training mixtures of VLGuard safety data and general instruction data (the paper's two recipes).

- ``posthoc``: fine-tune an already trained model on the safety data plus ``n_helpfulness``
  conversations drawn (seeded, without replacement) from its instruction data, which keeps it helpful.
- ``mixed``: append the safety data to the full instruction dataset and shuffle (seeded): the safety
  data is part of the normal visual instruction tuning.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from vlguard.data.conversations import Conversation
from vlguard.data.jsonio import write_jsonl
from vlguard.errors import ConfigError

Recipe = Literal["posthoc", "mixed"]
RECIPES: tuple[Recipe, ...] = ("posthoc", "mixed")
SAFETY, INSTRUCTIONS = "safety", "instructions"


@dataclass(frozen=True)
class Mixture:
    """A training mixture: conversations tagged with their ``source`` and the count per source."""

    recipe: Recipe
    seed: int
    conversations: tuple[Conversation, ...]
    counts: dict[str, int]


def _tag(conversations: Sequence[Conversation], source: str) -> list[Conversation]:
    return [c if c.source == source else dataclasses.replace(c, source=source) for c in conversations]


def build_mixture(
    recipe: Recipe,
    safety: Sequence[Conversation],
    instructions: Sequence[Conversation],
    *,
    n_helpfulness: int = 5000,
    seed: int = 0,
) -> Mixture:
    """Build a ``posthoc`` or ``mixed`` mixture (see the module docstring).

    ``posthoc`` keeps the safety conversations in order followed by the drawn ones (the trainer
    shuffles); ``mixed`` shuffles everything. The same inputs and seed always give the same mixture.
    """
    rng = random.Random(seed)
    tagged_safety = _tag(safety, SAFETY)
    if recipe == "posthoc":
        if n_helpfulness < 0:
            raise ConfigError(f"n_helpfulness must be >= 0, got {n_helpfulness}")
        if n_helpfulness > len(instructions):
            raise ConfigError(
                f"posthoc mixture: n_helpfulness={n_helpfulness} but the instruction dataset has only "
                f"{len(instructions)} conversations; lower --n"
            )
        drawn = rng.sample(list(instructions), n_helpfulness)
        conversations = tagged_safety + _tag(drawn, INSTRUCTIONS)
    elif recipe == "mixed":
        conversations = _tag(instructions, INSTRUCTIONS) + tagged_safety
        rng.shuffle(conversations)
    else:
        raise ConfigError(f"unknown mixture recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    counts = Counter(c.source for c in conversations)
    return Mixture(
        recipe=recipe,
        seed=seed,
        conversations=tuple(conversations),
        counts={SAFETY: counts[SAFETY], INSTRUCTIONS: counts[INSTRUCTIONS]},
    )


def write_mixture(mixture: Mixture, path: str | Path) -> Path:
    """Write a mixture as messages-format JSONL, one conversation per line with its ``source``."""
    return write_jsonl((c.to_dict() for c in mixture.conversations), path)
