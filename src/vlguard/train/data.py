"""Training data: the mixture of conversations, where their images are, and the torch dataset.

``build_training_data`` turns ``DataConfig`` into conversations (``posthoc`` / ``mixed`` mixtures of
VLGuard and an instruction set, or an instruction set alone) and checks them before any model is
loaded: an empty mixture or an image that does not load is an error naming the conversation.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlguard.data.conversations import Conversation, load_conversations, vlguard_conversations
from vlguard.data.images import ImageSource, blank_image
from vlguard.data.mix import INSTRUCTIONS, SAFETY, build_mixture
from vlguard.errors import ConfigError, ImageLoadError, VLGuardError
from vlguard.train.config import DataConfig

logger = logging.getLogger(__name__)

# Size of the blank image when the original is unavailable; the same default as evaluation's.
BLANK_SIZE = (336, 336)
SAMPLE_SOURCE = "sample"


class EmptyDatasetError(VLGuardError):
    """The training data has no conversations."""


@dataclass(frozen=True)
class TrainingData:
    """Conversations to train on, the image root of each source, counts and provenance."""

    conversations: tuple[Conversation, ...]
    images: Mapping[str, ImageSource | None]
    counts: dict[str, int]
    sources: dict[str, Any] = field(default_factory=dict)


def _load_instructions(config: DataConfig) -> tuple[list[Conversation], ImageSource | None, dict[str, Any]]:
    if config.instructions is None:
        return [], None, {}
    image_root = config.instructions_image_root
    local = Path(config.instructions)
    if image_root is None and local.is_file() and config.image_mode == "original":
        image_root = str(local.parent)  # LLaVA-style datasets keep image paths relative to the file
    dataset = load_conversations(
        config.instructions, revision=config.instructions_revision, image_root=image_root
    )
    return list(dataset.conversations), dataset.images, dataset.source


def resolve_vlguard_source(source: str) -> str:
    """``sample`` names the small VLGuard-format dataset shipped with vlguard; anything else is kept."""
    if source == SAMPLE_SOURCE:
        from vlguard.data.sample import sample_dataset_dir

        return str(sample_dataset_dir())
    return source


def check_data_config(config: DataConfig) -> None:
    """The sources each recipe needs (checked before anything is loaded)."""
    if config.recipe == "instructions" and config.instructions is None:
        raise ConfigError("data.recipe=instructions needs data.instructions (a LLaVA or messages file)")
    if config.recipe != "instructions" and config.vlguard is None:
        raise ConfigError(f"data.recipe={config.recipe} needs data.vlguard (a folder or Hub repo id)")
    if config.recipe == "mixed" and config.instructions is None:
        raise ConfigError("data.recipe=mixed needs data.instructions (the full instruction dataset)")
    if config.recipe == "posthoc" and config.n_helpfulness > 0 and config.instructions is None:
        raise ConfigError(
            "data.recipe=posthoc with data.n_helpfulness > 0 needs data.instructions "
            "(or set data.n_helpfulness=0 to train on VLGuard alone)"
        )


def build_training_data(config: DataConfig) -> TrainingData:
    """Load and mix the data that ``config`` describes (see :class:`DataConfig`)."""
    from vlguard.data import load_vlguard

    instructions, instruction_images, instruction_source = _load_instructions(config)
    sources: dict[str, Any] = {INSTRUCTIONS: instruction_source}
    images: dict[str, ImageSource | None] = {INSTRUCTIONS: instruction_images}
    check_data_config(config)
    if config.recipe == "instructions":
        conversations = [c.__class__(c.id, c.image, c.messages, INSTRUCTIONS) for c in instructions]
        counts = {INSTRUCTIONS: len(conversations)}
    else:
        assert config.vlguard is not None
        safety_set = load_vlguard(
            resolve_vlguard_source(config.vlguard),
            config.vlguard_split,
            revision=config.vlguard_revision,
            download_images=config.image_mode == "original",
        )
        safety = vlguard_conversations(safety_set.records, seed=config.seed)
        images[SAFETY] = safety_set.images
        sources[SAFETY] = safety_set.source
        mixture = build_mixture(
            config.recipe, safety, instructions, n_helpfulness=config.n_helpfulness, seed=config.seed
        )
        conversations = list(mixture.conversations)
        counts = dict(mixture.counts)
    if config.max_samples is not None and config.max_samples < len(conversations):
        conversations = random.Random(config.seed).sample(conversations, config.max_samples)
        counts = {name: sum(c.source == name for c in conversations) for name in counts}
    if not conversations:
        raise EmptyDatasetError(f"no training conversations (recipe {config.recipe}, counts {counts})")
    data = TrainingData(tuple(conversations), images, counts, sources)
    if config.image_mode == "original" and config.check_images:
        check_images(data)
    return data


def check_images(data: TrainingData) -> None:
    """Open every image once, so that a missing or broken one fails before training starts."""
    checked = 0
    for conversation in data.conversations:
        if conversation.image is None:
            continue
        root = data.images.get(conversation.source)
        if root is None:
            raise ImageLoadError(
                f"conversation {conversation.id} ({conversation.source}): image {conversation.image} cannot be "
                "loaded: no image root is available for this data (give one, or set data.image_mode=blank/none)"
            )
        try:
            root.open(conversation.image).close()
        except ImageLoadError as err:
            raise ImageLoadError(f"conversation {conversation.id} ({conversation.source}): {err}") from err
        checked += 1
    logger.info("checked %d training images", checked)


def _strip_images(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {**m, "content": [p for p in m["content"] if p.get("type") != "image"]}
        if isinstance(m.get("content"), list)
        else m
        for m in messages
    ]


class ConversationDataset:
    """A map-style torch dataset: item ``i`` is ``{"id", "messages", "images"}`` with PIL images.

    Images are opened lazily (in the dataloader workers) according to the image mode, as evaluation
    does: ``original`` opens the file, ``blank`` gives a white image (of the original's size when it
    is available), ``none`` drops the image parts from the messages.
    """

    def __init__(self, data: TrainingData, image_mode: str) -> None:
        self.conversations = data.conversations
        self.images = dict(data.images)
        self.image_mode = image_mode

    def __len__(self) -> int:
        return len(self.conversations)

    def lengths(self) -> list[int]:
        """A cheap proxy of each conversation's token count (text characters), for length grouping."""
        return [
            sum(len(p.get("text", "")) for m in c.messages for p in m["content"] if isinstance(p, dict))
            for c in self.conversations
        ]

    def __getitem__(self, index: int) -> dict[str, Any]:
        conversation = self.conversations[index]
        messages = [dict(m) for m in conversation.messages]
        if conversation.image is None or self.image_mode == "none":
            return {"id": conversation.id, "messages": _strip_images(messages), "images": []}
        root = self.images.get(conversation.source)
        if self.image_mode == "blank":
            size = BLANK_SIZE
            size_of = getattr(root, "image_size", None)
            if root is not None and callable(size_of) and root.exists(conversation.image):
                size = size_of(conversation.image)
            return {"id": conversation.id, "messages": messages, "images": [blank_image(size)]}
        if root is None:
            raise ImageLoadError(f"conversation {conversation.id}: no image root for {conversation.image}")
        image = root.open(conversation.image)
        return {"id": conversation.id, "messages": messages, "images": [image.convert("RGB")]}
