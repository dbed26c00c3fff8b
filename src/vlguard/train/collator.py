"""Batching for VLM fine-tuning: the model's own processor, and labels on assistant tokens only.

Most chat templates have no ``{% generation %}`` markers, so the assistant tokens are found without
them. The conversation is rendered once with the template; for each assistant turn ``k`` the template
also renders ``messages[:k]`` with the generation prompt. Where that prompt rendering ends, the
assistant's answer starts; it ends after the answer text plus the end-of-turn token that follows it
(``</s>``, ``<end_of_utterance>``, ``<|im_end|>``: the first special token after the text). These
character spans are mapped to tokens with the tokenizer's offsets, and from the text-only tokens to
the processor's tokens (whose image placeholders are expanded to many image tokens).

Everything else (system, user, image, template and padding tokens) is labelled -100.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vlguard.errors import VLGuardError

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100


class CollatorError(VLGuardError):
    """A conversation cannot be turned into a training example (no answer left, image cut off, ...)."""


@dataclass(frozen=True)
class CharSpan:
    """Characters ``[start, end)`` of the rendered conversation that the model learns to produce."""

    start: int
    end: int


def _content_text(message: dict[str, Any]) -> str:
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def render(processor: Any, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = False) -> str:
    """The conversation as text through the model's chat template (image placeholders unexpanded)."""
    return str(
        processor.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )
    )


def assistant_char_spans(processor: Any, messages: Sequence[dict[str, Any]]) -> tuple[str, list[CharSpan]]:
    """Render ``messages`` and locate each assistant answer (+ its end-of-turn token) in the text."""
    text = render(processor, messages)
    special = sorted(_special_tokens(processor), key=len, reverse=True)
    spans: list[CharSpan] = []
    cursor = 0
    for k, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        answer = _content_text(message)
        prompt = render(processor, messages[:k], add_generation_prompt=True)
        # Where the generation prompt ends the answer starts, when the template renders prefixes
        # consistently (nearly all do); otherwise look for the answer text after the previous one.
        start = len(prompt) if text.startswith(prompt) and len(prompt) >= cursor else -1
        found = text.find(answer, start if start >= 0 else cursor) if answer else -1
        if found < 0:
            if start < 0:
                raise CollatorError(f"assistant turn {k} not found in the rendered conversation")
            # The template rewrote the answer (e.g. stripped it): take the whole rendered turn.
            end = len(render(processor, messages[: k + 1]))
        else:
            start = found if start < 0 else start
            end = found + len(answer)
            tail = text[end:]
            eot = next((tok for tok in special if tail.startswith(tok)), None)
            if eot is not None:
                end += len(eot)
        spans.append(CharSpan(start, end))
        cursor = end
    return text, spans


def _special_tokens(processor: Any) -> set[str]:
    tokenizer = getattr(processor, "tokenizer", processor)
    tokens = set(getattr(tokenizer, "all_special_tokens", []))
    tokens.update(
        str(t)
        for t in getattr(tokenizer, "added_tokens_decoder", {}).values()
        if getattr(t, "special", False)
    )
    image_token = getattr(processor, "image_token", None)
    tokens.discard(str(image_token))
    return {t for t in tokens if t}


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class VLMCollator:
    """Turns examples ``{"id", "messages", "images"}`` into a right-padded batch with masked labels.

    ``images`` holds PIL images in the order of the ``{"type": "image"}`` parts (empty for text-only
    examples). Sequences longer than ``max_length`` lose their last tokens; cutting into an image is
    an error naming the example.
    """

    processor: Any
    max_length: int = 2048
    stats: dict[str, int] = field(default_factory=lambda: {"fallback_alignments": 0})

    def __post_init__(self) -> None:
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        if self.tokenizer.pad_token_id is None:
            raise CollatorError(
                "the tokenizer has no pad token; set one (e.g. the eos token) before training"
            )
        image_token = getattr(self.processor, "image_token", None)
        self.image_token = str(image_token) if image_token else None
        self.image_token_id = (
            self.tokenizer.convert_tokens_to_ids(self.image_token) if self.image_token is not None else None
        )

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        texts, spans = [], []
        for example in examples:
            text, example_spans = assistant_char_spans(self.processor, example["messages"])
            texts.append(text)
            spans.append(example_spans)
        has_images = any(example["images"] for example in examples)
        kwargs: dict[str, Any] = {"padding": True, "padding_side": "right", "return_tensors": "pt"}
        bos = self.tokenizer.bos_token
        # As processor.apply_chat_template does: no second BOS when the template writes one.
        add_special = not (bos and texts[0].startswith(bos))
        batch = self.processor(
            text=texts,
            images=[list(example["images"]) for example in examples] if has_images else None,
            add_special_tokens=add_special,
            **kwargs,
        )
        input_ids = batch["input_ids"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        for row, example in enumerate(examples):
            ids = input_ids[row, : lengths[row]].tolist()
            token_spans = self._token_spans(texts[row], spans[row], ids, list(example["images"]), add_special)
            for start, end in token_spans:
                labels[row, start:end] = input_ids[row, start:end]
            if not token_spans or all(end <= start for start, end in token_spans):
                raise CollatorError(f"example {example.get('id', row)}: no assistant tokens to learn from")
        batch["labels"] = labels
        if input_ids.shape[1] > self.max_length:
            batch = self._truncate(batch, examples)
        return dict(batch)

    def _token_spans(
        self, text: str, spans: list[CharSpan], ids: list[int], images: list[Any], add_special: bool
    ) -> list[tuple[int, int]]:
        """Token ranges (in the processor's ids) of the assistant character spans."""
        encoded = self.tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
        text_ids: list[int] = encoded["input_ids"]
        offsets: list[tuple[int, int]] = encoded["offset_mapping"]
        image_positions = [i for i, t in enumerate(text_ids) if t == self.image_token_id]
        last_image = image_positions[-1] if image_positions else -1
        shift = len(ids) - len(text_ids)
        tail = len(text_ids) - last_image - 1
        # Fast path: the text after the last image placeholder tokenizes the same with and without the
        # image expansion, so text-only token i is processor token i + shift there.
        tail_matches = tail == 0 or ids[-tail:] == text_ids[-tail:]
        result = []
        for span in spans:
            members = [i for i, (a, b) in enumerate(offsets) if b > a and b > span.start and a < span.end]
            if not members:
                result.append((0, 0))
                continue
            first, last = members[0], members[-1]
            if tail_matches and first > last_image:
                result.append((first + shift, last + 1 + shift))
            else:
                result.append(self._span_by_prefixes(text, span, ids, images, add_special))
        return result

    def _span_by_prefixes(
        self, text: str, span: CharSpan, ids: list[int], images: list[Any], add_special: bool
    ) -> tuple[int, int]:
        """Exact but slower: process the text up to each span boundary and compare with the full ids."""
        self.stats["fallback_alignments"] += 1

        def boundary(char: int) -> int:
            prefix = text[:char]
            n_images = prefix.count(self.image_token) if self.image_token else 0
            out = self.processor(
                text=[prefix],
                images=[images[:n_images]] if n_images else None,
                add_special_tokens=add_special,
            )
            return _lcp(list(out["input_ids"][0]), ids)

        return boundary(span.start), boundary(span.end)

    def _truncate(self, batch: Any, examples: Sequence[dict[str, Any]]) -> Any:
        """Cut to ``max_length``, refusing to cut through image tokens (the model would fail)."""
        cut = self.max_length
        if self.image_token_id is not None:
            for row, example in enumerate(examples):
                kept = (batch["input_ids"][row, :cut] == self.image_token_id).sum()
                total = (batch["input_ids"][row] == self.image_token_id).sum()
                if kept != total:
                    raise CollatorError(
                        f"example {example.get('id', row)}: max_length={self.max_length} cuts through its "
                        "image tokens; raise max_length"
                    )
        for key in ("input_ids", "attention_mask", "labels", "mm_token_type_ids", "token_type_ids"):
            if key in batch:
                batch[key] = batch[key][:, :cut]
        return batch
