"""The auxiliary safety loss: at every step, loss + λ × (the loss on a batch of safety conversations).

This is how Booster (GitHub ``git-disl/Booster``, ``trainer.py``: ``VlguardTrainer``) implements the
"VLGuard" defence against harmful fine-tuning: the user's batch and a small batch of alignment data
are both fitted at every step. The trainer (:mod:`vlguard.train.trainer`) adds the term in its
``compute_loss``; this module loads the safety data and decides which safety conversations form the
batch of each draw.

Which batch a draw gets depends only on the seed, the draw number (optimizer step × gradient
accumulation + micro-step) and the process rank, never on iterator state: a run resumed from a
checkpoint sees exactly the safety batches that an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

from vlguard.data.conversations import load_conversations
from vlguard.errors import ConfigError
from vlguard.train.config import SafetyLossConfig
from vlguard.train.data import ConversationDataset, EmptyDatasetError, TrainingData, check_images

SAFETY_LOSS_SOURCE = "safety_loss"


def check_safety_loss_config(config: SafetyLossConfig) -> None:
    """Values that are wrong on their own (checked before anything loads)."""
    if config.weight < 0 or not math.isfinite(config.weight):
        raise ConfigError(
            f"config key 'safety_loss.weight' must be a finite number >= 0, got {config.weight}"
        )
    if config.batch_size <= 0:
        raise ConfigError(f"config key 'safety_loss.batch_size' must be positive, got {config.batch_size}")


def load_safety_data(config: SafetyLossConfig, image_mode: str, check: bool = True) -> TrainingData | None:
    """The safety conversations of ``config`` (None when the auxiliary loss is off).

    Image paths are relative to the file's folder (as for ``data.instructions``); with
    ``image_mode=original`` every image is opened once here, so a broken one fails before training.
    """
    check_safety_loss_config(config)
    if config.data is None:
        return None
    return load_side_data(
        config.data, config.image_root, image_mode, SAFETY_LOSS_SOURCE, "safety_loss.data", check=check
    )


def load_side_data(
    path: str, image_root: str | None, image_mode: str, source: str, key: str, check: bool = True
) -> TrainingData:
    """Conversations beside the training set (the safety loss's, a defence's), tagged ``source``.

    ``key`` names the config key in errors. Image paths are relative to the file's folder unless
    ``image_root`` is given; with ``image_mode=original`` every image is opened once here.
    """
    local = Path(path)
    if image_root is None and local.is_file() and image_mode == "original":
        image_root = str(local.parent)  # as for data.instructions: image paths relative to the file
    dataset = load_conversations(path, image_root=image_root)
    conversations = tuple(c.__class__(c.id, c.image, c.messages, source) for c in dataset.conversations)
    if not conversations:
        raise EmptyDatasetError(f"{key} {path}: no conversations")
    data = TrainingData(
        conversations=conversations,
        images={source: dataset.images},
        counts={source: len(conversations)},
        sources={source: dataset.source},
    )
    if check and image_mode == "original":
        check_images(data)
    return data


@dataclass(frozen=True)
class SafetyBatches:
    """Batches of side data (the safety loss's; a defence's alignment or harmful conversations) drawn
    without replacement within each pass over the data, reshuffled per pass.

    Draw ``d`` of process ``rank`` (of ``world_size``) is global batch ``g = d × world_size + rank``;
    pass ``g // batches_per_pass`` is a permutation of the dataset, seeded by ``stream``, the seed and
    the pass, cut into batches.
    """

    dataset: ConversationDataset
    batch_size: int
    seed: int
    rank: int = 0
    world_size: int = 1
    stream: str = "safety-loss"

    @property
    def batches_per_pass(self) -> int:
        """How many batches one pass over the safety data gives (the last one may be smaller)."""
        return max(1, math.ceil(len(self.dataset) / self.batch_size))

    def indices(self, draw: int) -> list[int]:
        """The dataset indices of draw number ``draw`` on this process."""
        batch = draw * self.world_size + self.rank
        epoch, position = divmod(batch, self.batches_per_pass)
        order = list(range(len(self.dataset)))
        random.Random(f"{self.stream}:{self.seed}:{epoch}").shuffle(order)
        return order[position * self.batch_size : (position + 1) * self.batch_size]

    def examples(self, draw: int) -> list[dict[str, object]]:
        """The examples of draw ``draw``, ready for the collator."""
        return [self.dataset[i] for i in self.indices(draw)]
