"""Export VLGuard records for training: the LLaVA conversation format and the chat messages format.

Both use the turn order of VLGuard's reference ``convert_to_llava_format.py``: one RNG seeded once, and,
for every record in file order, a safe image's two instruction/response pairs shuffled with it (a
harmful image has one pair and draws nothing). For the same records and seed, ``to_llava`` reproduces
the reference output exactly and ``to_messages`` holds the same turns in the same order.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from typing import Any

from vlguard.data.jsonio import write_json, write_jsonl
from vlguard.records import InstructionResponse, VLGuardRecord

__all__ = ["ordered_pairs", "to_llava", "to_messages", "write_json", "write_jsonl"]

IMAGE_TOKEN = "<image>"


def ordered_pairs(
    records: Iterable[VLGuardRecord], seed: int = 0
) -> list[tuple[VLGuardRecord, list[InstructionResponse]]]:
    """Each record with its pairs in training order (the reference's seeded shuffle)."""
    # A private Random(seed) gives the same draws as the reference's random.seed(seed) + random.shuffle,
    # without touching the global RNG.
    rng = random.Random(seed)
    ordered = []
    for record in records:
        pairs = list(record.pairs)
        if len(pairs) > 1:
            rng.shuffle(pairs)
        ordered.append((record, pairs))
    return ordered


def _record_fields(record: VLGuardRecord) -> dict[str, Any]:
    # The fields of the original record other than 'instr-resp', in the file's order.
    fields: dict[str, Any] = {"id": record.id, "image": record.image, "safe": record.safe}
    if record.category is not None or record.subcategory is not None:
        fields["harmful_category"] = record.category
        fields["harmful_subcategory"] = record.subcategory
    return fields


def to_llava(records: Sequence[VLGuardRecord], seed: int = 0) -> list[dict[str, Any]]:
    """LLaVA conversation format: the record's fields plus ``conversations`` of human/gpt turns.

    ``<image>`` is prepended to the first human turn with no separator, as in the reference script.
    """
    rows = []
    for record, pairs in ordered_pairs(records, seed):
        conversations = []
        for turn, pair in enumerate(pairs):
            prompt = f"{IMAGE_TOKEN}{pair.instruction}" if turn == 0 else pair.instruction
            conversations.append({"from": "human", "value": prompt})
            conversations.append({"from": "gpt", "value": pair.response})
        rows.append({**_record_fields(record), "conversations": conversations})
    return rows


def to_messages(records: Sequence[VLGuardRecord], seed: int = 0) -> list[dict[str, Any]]:
    """Chat messages format (Hugging Face processors, TRL): ``{"id", "images", "messages"}``.

    The image part is in the first user turn only. ``id`` is the record's unique uid.
    """
    rows = []
    for record, pairs in ordered_pairs(records, seed):
        messages: list[dict[str, Any]] = []
        for turn, pair in enumerate(pairs):
            text = {"type": "text", "text": pair.instruction}
            user_content = [{"type": "image"}, text] if turn == 0 else [text]
            messages.append({"role": "user", "content": user_content})
            messages.append({"role": "assistant", "content": [{"type": "text", "text": pair.response}]})
        rows.append({"id": record.uid, "images": [record.image], "messages": messages})
    return rows
