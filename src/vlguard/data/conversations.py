"""Instruction datasets (LLaVA format or messages format) read into one normalised record.

Accepted rows, JSON list or JSONL:

- LLaVA: ``{"id", "image"?, "conversations": [{"from": "human"|"gpt", "value": "<image>\\n..."}]}``
- messages: ``{"id"?, "images"?: [path], "messages": [{"role": "user"|"assistant"|"system",
  "content": str | [{"type": "image"} | {"type": "text", "text": ...}]}]}``

Both become a ``Conversation`` whose messages are in the messages format with list content, the
image part in the turn that held the ``<image>`` marker (or the first user turn).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlguard.data.export import to_messages
from vlguard.data.images import ImageSource, open_image_root, unsafe_path_reason
from vlguard.data.jsonio import read_json_or_jsonl
from vlguard.data.sources import DataSourceError, hub_file, looks_like_repo_id, sha256_file
from vlguard.errors import DataValidationError, Problem
from vlguard.records import VLGuardRecord

LLAVA_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
MESSAGE_ROLES = ("system", "user", "assistant")
# The marker and the newline LLaVA puts next to it ("<image>\nWhat is ..." or "What is ...\n<image>").
_IMAGE_MARKER = re.compile(r"\n?<image>\n?")


@dataclass(frozen=True)
class Conversation:
    """One training conversation: an optional image (relative to its dataset's image root) and turns.

    ``messages`` are ``{"role", "content": [parts]}`` dicts; ``source`` names the dataset it came
    from (set by mixtures: ``safety`` / ``instructions``).
    """

    id: str
    image: str | None
    messages: tuple[dict[str, Any], ...]
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The messages-format row (``images`` is empty for a text-only conversation)."""
        row: dict[str, Any] = {
            "id": self.id,
            "images": [self.image] if self.image else [],
            "messages": list(self.messages),
        }
        if self.source:
            row["source"] = self.source
        return row


@dataclass(frozen=True)
class ConversationDataset:
    """Conversations loaded from one file, with their image root (None when not given) and source."""

    conversations: tuple[Conversation, ...]
    images: ImageSource | None
    source: dict[str, Any]


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _from_llava(
    row: dict[str, Any], name: str, file: str, problems: list[Problem]
) -> tuple[dict[str, Any], ...]:
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        problems.append(Problem(file, name, "conversations", "expected a non-empty list of turns"))
        return ()
    messages: list[dict[str, Any]] = []
    for j, turn in enumerate(turns):
        where = f"conversations[{j}]"
        if not isinstance(turn, dict):
            problems.append(Problem(file, name, where, "expected an object with 'from' and 'value'"))
            continue
        role, value = turn.get("from"), turn.get("value")
        if role not in LLAVA_ROLES:
            problems.append(
                Problem(file, name, f"{where}.from", f"unknown speaker {role!r} (expected human or gpt)")
            )
            continue
        if not isinstance(value, str):
            problems.append(
                Problem(file, name, f"{where}.value", f"expected str, got {type(value).__name__}")
            )
            continue
        parts: list[dict[str, Any]] = []
        if "<image>" in value:
            parts.append({"type": "image"})
            value = _IMAGE_MARKER.sub("", value, count=1).strip("\n")
        parts.append(_text_part(value))
        messages.append({"role": LLAVA_ROLES[role], "content": parts})
    return tuple(messages)


def _from_messages(
    row: dict[str, Any], name: str, file: str, problems: list[Problem]
) -> tuple[dict[str, Any], ...]:
    turns = row.get("messages")
    if not isinstance(turns, list) or not turns:
        problems.append(Problem(file, name, "messages", "expected a non-empty list of messages"))
        return ()
    messages: list[dict[str, Any]] = []
    for j, turn in enumerate(turns):
        where = f"messages[{j}]"
        if not isinstance(turn, dict) or turn.get("role") not in MESSAGE_ROLES:
            problems.append(
                Problem(file, name, f"{where}.role", f"expected one of {', '.join(MESSAGE_ROLES)}")
            )
            continue
        content = turn.get("content")
        if isinstance(content, str):
            parts = [_text_part(content)]
        elif isinstance(content, list) and all(
            isinstance(p, dict)
            and (p.get("type") == "image" or (p.get("type") == "text" and isinstance(p.get("text"), str)))
            for p in content
        ):
            # Keep only what the format defines (drops e.g. "image": null keys some exports add).
            parts = [{"type": "image"} if p["type"] == "image" else _text_part(p["text"]) for p in content]
        else:
            problems.append(
                Problem(
                    file, name, f"{where}.content", "expected a string or a list of {type: image|text} parts"
                )
            )
            continue
        messages.append({"role": turn["role"], "content": parts})
    return tuple(messages)


def _image_count(messages: Sequence[dict[str, Any]]) -> int:
    return sum(1 for m in messages for p in m["content"] if p["type"] == "image")


def parse_conversations(rows: Sequence[Any], file: str) -> tuple[list[Conversation], list[Problem]]:
    """Validate and normalise rows of either format; the conversations and the problems found."""
    conversations: list[Conversation] = []
    problems: list[Problem] = []
    stem = Path(file).stem
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            problems.append(
                Problem(file, f"#{index}", "", f"expected a JSON object, got {type(row).__name__}")
            )
            continue
        raw_id = row.get("id")
        # LLaVA's mix665k has integer ids for some rows; rows without an id are numbered.
        cid = str(raw_id) if isinstance(raw_id, (str, int)) and str(raw_id) else f"{stem}#{index}"
        before = len(problems)
        if "conversations" in row:
            messages = _from_llava(row, cid, file, problems)
            image = row.get("image")
            image_field = "image"
        elif "messages" in row:
            messages = _from_messages(row, cid, file, problems)
            images = row.get("images") or []
            if not isinstance(images, list) or len(images) > 1:
                problems.append(Problem(file, cid, "images", "expected a list of at most one image path"))
                continue
            image = images[0] if images else None
            image_field = "images[0]"
        else:
            problems.append(
                Problem(file, cid, "", "neither 'conversations' (LLaVA) nor 'messages' (chat format)")
            )
            continue
        if image is not None:
            reason = (
                unsafe_path_reason(image)
                if isinstance(image, str)
                else f"expected str, got {type(image).__name__}"
            )
            if reason is not None:
                problems.append(Problem(file, cid, image_field, reason))
        if len(problems) > before:
            continue
        roles = [m["role"] for m in messages if m["role"] != "system"]
        if "user" not in roles or "assistant" not in roles or roles[0] != "user":
            problems.append(
                Problem(file, cid, "", "a conversation needs a user turn first and an assistant turn")
            )
            continue
        if image is None and _image_count(messages):
            problems.append(
                Problem(file, cid, "image", "a turn has an image marker but the row names no image")
            )
            continue
        if image is not None and _image_count(messages) == 0:
            # The image goes with the first user turn when no turn marks where it belongs.
            first_user = next(i for i, m in enumerate(messages) if m["role"] == "user")
            message = messages[first_user]
            with_image = {"role": "user", "content": [{"type": "image"}, *message["content"]]}
            messages = (*messages[:first_user], with_image, *messages[first_user + 1 :])
        elif _image_count(messages) > 1:
            problems.append(
                Problem(file, cid, "", "more than one image marker; one image per conversation is supported")
            )
            continue
        conversations.append(Conversation(id=cid, image=image, messages=messages))
    return conversations, problems


def _split_hub_path(spec: str) -> tuple[str, str] | None:
    # 'owner/name/path/in/repo.json' → ('owner/name', 'path/in/repo.json')
    parts = spec.split("/")
    if len(parts) < 3 or not looks_like_repo_id("/".join(parts[:2])):
        return None
    return "/".join(parts[:2]), "/".join(parts[2:])


def load_conversations(
    path_or_repo: str | Path,
    *,
    revision: str | None = None,
    image_root: str | Path | None = None,
    skip_invalid: bool = False,
) -> ConversationDataset:
    """Load an instruction dataset (LLaVA or messages format; ``.json`` list or ``.jsonl``).

    ``path_or_repo`` is a local file, or a file in a Hub dataset written ``owner/name/path/file.json``
    (downloaded through the huggingface_hub cache at ``revision``). Invalid rows raise
    ``DataValidationError`` listing every problem, unless ``skip_invalid``.
    """
    path = Path(path_or_repo)
    source: dict[str, Any]
    if path.exists():
        if revision is not None:
            raise DataSourceError(f"{path}: --revision applies to Hub sources only")
        if path.is_dir():
            raise DataSourceError(f"{path}: expected a .json or .jsonl file of conversations, got a folder")
        source = {"kind": "local", "path": str(path)}
    else:
        hub = _split_hub_path(str(path_or_repo))
        if hub is None:
            raise DataSourceError(
                f"{path_or_repo}: no such file (and not a Hub path like owner/name/file.json)"
            )
        downloaded = hub_file(hub[0], hub[1], revision)
        assert downloaded is not None
        path = downloaded
        source = {"kind": "hub", "repo_id": hub[0], "filename": hub[1], "revision": revision}
    source["sha256"] = sha256_file(path)
    conversations, problems = parse_conversations(read_json_or_jsonl(path), str(path))
    if problems and not skip_invalid:
        raise DataValidationError(problems, hint="(use --skip-invalid to load the valid rows only)")
    source["skipped"] = len(problems)
    images = open_image_root(image_root) if image_root is not None else None
    return ConversationDataset(conversations=tuple(conversations), images=images, source=source)


def vlguard_conversations(records: Sequence[VLGuardRecord], seed: int = 0) -> list[Conversation]:
    """VLGuard records as conversations, turns in the seeded order of ``export.to_messages``."""
    return [
        Conversation(id=row["id"], image=row["images"][0], messages=tuple(row["messages"]))
        for row in to_messages(records, seed)
    ]
