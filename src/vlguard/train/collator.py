"""Batching for fine-tuning VLMs and text-only LLMs: labels on the assistant's tokens only.

One collator for both: it calls the model's processor, or, for a text-only LLM, its tokenizer (both take
``text=[...]`` and pad). Conversations are rendered in one of two prompt formats:

* ``chat``: the model's chat template. Most templates have no ``{% generation %}`` markers, so the
  assistant tokens are found without them. The conversation is rendered once; for each assistant turn
  ``k`` the template also renders ``messages[:k]`` with the generation prompt. Where that prompt ends, the
  assistant's answer starts; it ends after the answer text plus the end-of-turn token that follows it
  (``</s>``, ``<end_of_utterance>``, ``<|im_end|>``: the first special token after the text). A template
  that ends answers with no special token (LLaVA-NeXT's literal ``<\\s>``) never teaches the model to stop:
  the collator warns once.
* ``alpaca`` / ``alpaca-newline``: the Stanford Alpaca prompt (``vlguard.prompts``, exact strings; Booster's
  ends with a newline) followed by the response and the EOS token, for one user turn and one answer; the
  response and EOS are learned, the prompt is not.

A user turn with two text parts is an instruction and its task input (``Sample.input`` at evaluation):
``chat`` joins them with ``vlguard.prompts.user_text``, ``alpaca`` puts the second under ``### Input:``.

The answer's character spans are mapped to tokens with the tokenizer's offsets, and from the text-only
tokens to the processor's tokens (whose image placeholders are expanded to many image tokens, and to
which some processors add a BOS after the image or a newline at the end, as PaliGemma's does).
Everything else (system, user, image, template and padding tokens) is labelled -100.

PaliGemma attends bidirectionally over its prefix (``token_type_ids`` 0); the answer must be causal
(type 1), or each answer token would see the tokens after it. The collator marks every token from the
first answer on as type 1.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vlguard.errors import ConfigError, VLGuardError
from vlguard.models.loading import sees_images, starts_with_bos, tokenizer_of
from vlguard.prompts import PROMPT_FORMATS, alpaca_prompt, is_alpaca
from vlguard.train.data import ConversationDataset

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
# Processors of prefix-LM models: token type 0 is the bidirectional prefix, 1 the causal suffix.
PREFIX_LM_PROCESSORS = frozenset({"PaliGemmaProcessor"})
# Tokens a processor may append after the text (PaliGemma: "\n"); tried when aligning text to processor ids.
_MAX_PROCESSOR_SUFFIX = 2
# Conversations tokenized before training to check that max_length leaves answer tokens to learn from.
TRUNCATION_CHECKED = 32


class CollatorError(VLGuardError):
    """A conversation cannot be turned into a training example (no answer left, image cut off, ...)."""


@dataclass(frozen=True)
class CharSpan:
    """Characters ``[start, end)`` of the rendered conversation that the model learns to produce.

    ``has_end_token`` says whether the span ends with a special end-of-turn token.
    """

    start: int
    end: int
    has_end_token: bool = True


def _texts(message: dict[str, Any]) -> list[str]:
    content = message.get("content", "")
    if isinstance(content, str):
        return [content]
    return [part.get("text", "") for part in content if part.get("type") == "text"]


def _content_text(message: dict[str, Any]) -> str:
    """A turn's text: its text parts joined as instruction + input (``vlguard.prompts.user_text``)."""
    return "\n\n".join(t for t in _texts(message) if t)


def normalise_messages(messages: Sequence[dict[str, Any]], typed_parts: bool) -> list[dict[str, Any]]:
    """Messages as the template expects them: one text part per turn (instruction and input joined).

    ``typed_parts``: list content with ``{"type": "image"}`` parts (VLM templates); otherwise plain string
    content, as text-only LLM templates (Llama, Qwen, Mistral, ...) expect.
    """
    result = []
    for message in messages:
        text = _content_text(message)
        if not typed_parts:
            result.append({"role": message["role"], "content": text})
            continue
        content = message.get("content", "")
        if isinstance(content, str):
            result.append({"role": message["role"], "content": [{"type": "text", "text": text}]})
            continue
        # Image parts stay where they are; the text parts become one, where the first one was.
        parts: list[dict[str, Any]] = []
        for part in content:
            if part.get("type") != "text":
                parts.append(part)
            elif not any(p.get("type") == "text" for p in parts):
                parts.append({"type": "text", "text": text})
        result.append({"role": message["role"], "content": parts})
    return result


def render(processor: Any, messages: Sequence[dict[str, Any]], add_generation_prompt: bool = False) -> str:
    """The conversation as text through the model's chat template (image placeholders unexpanded)."""
    return str(
        processor.apply_chat_template(
            list(messages), tokenize=False, add_generation_prompt=add_generation_prompt
        )
    )


def assistant_char_spans(processor: Any, messages: Sequence[dict[str, Any]]) -> tuple[str, list[CharSpan]]:
    """Render ``messages`` with the chat template and locate each answer (+ its end-of-turn token)."""
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
        has_end = True
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
            has_end = eot is not None
        spans.append(CharSpan(start, end, has_end))
        cursor = end
    return text, spans


def alpaca_char_spans(
    tokenizer: Any, messages: Sequence[dict[str, Any]], example_id: str, prompt_format: str = "alpaca"
) -> tuple[str, list[CharSpan]]:
    """The Alpaca prompt + response + EOS of a one-question conversation, and the span of response + EOS."""
    turns = [m for m in messages if m.get("role") != "system"]
    if any(m.get("role") == "system" for m in messages):
        raise CollatorError(f"example {example_id}: prompt_format={prompt_format} has no system turn")
    if [m.get("role") for m in turns] != ["user", "assistant"]:
        raise CollatorError(
            f"example {example_id}: prompt_format={prompt_format} takes one user turn and one answer, got roles "
            f"{[m.get('role') for m in turns]} (use prompt_format=chat for multi-turn conversations)"
        )
    user, answer = _texts(turns[0]), _content_text(turns[1])
    instruction, task_input = user[0], "\n\n".join(t for t in user[1:] if t)
    prompt = alpaca_prompt(instruction, task_input or None, prompt_format)
    eos = str(tokenizer.eos_token)
    text = prompt + answer + eos
    return text, [CharSpan(len(prompt), len(text))]


def _special_tokens(processor: Any) -> set[str]:
    tokenizer = tokenizer_of(processor)
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
class ConversationCollator:
    """Turns examples ``{"id", "messages", "images"}`` into a right-padded batch with masked labels.

    ``processor`` is a VLM's processor or a text-only LLM's tokenizer. ``images`` holds PIL images in the
    order of the ``{"type": "image"}`` parts (empty for text-only examples). Sequences longer than
    ``max_length`` lose their last tokens; cutting into an image is an error naming the example.
    ``prompt_format`` is ``chat``, ``alpaca`` or ``alpaca-newline`` (see the module docstring).
    """

    processor: Any
    max_length: int = 2048
    prompt_format: str = "chat"
    stats: dict[str, int] = field(
        default_factory=lambda: {"fallback_alignments": 0, "answers_without_end": 0}
    )

    def __post_init__(self) -> None:
        if self.prompt_format not in PROMPT_FORMATS:
            raise CollatorError(
                f"prompt_format must be one of {', '.join(PROMPT_FORMATS)}, not {self.prompt_format!r}"
            )
        self.tokenizer = tokenizer_of(self.processor)
        if self.tokenizer.pad_token_id is None:
            raise CollatorError(
                "the tokenizer has no pad token; set one (e.g. the eos token) before training"
            )
        self.sees_images = sees_images(self.processor)
        image_token = getattr(self.processor, "image_token", None) if self.sees_images else None
        self.image_token = str(image_token) if image_token else None
        self.image_token_id = (
            self.tokenizer.convert_tokens_to_ids(self.image_token) if self.image_token is not None else None
        )
        self.prefix_lm = type(self.processor).__name__ in PREFIX_LM_PROCESSORS
        self._warned_no_end = False

    def render(self, example: dict[str, Any], row: int = 0) -> tuple[str, list[CharSpan]]:
        """The example's text and the character spans of what the model learns (see the module docstring)."""
        example_id = str(example.get("id", row))
        if is_alpaca(self.prompt_format):
            if example["images"]:
                raise CollatorError(
                    f"example {example_id}: prompt_format={self.prompt_format} is text only (it has an image)"
                )
            return alpaca_char_spans(self.tokenizer, example["messages"], example_id, self.prompt_format)
        messages = normalise_messages(example["messages"], typed_parts=self.sees_images)
        text, spans = assistant_char_spans(self.processor, messages)
        if not all(span.has_end_token for span in spans):
            self.stats["answers_without_end"] += 1
            if not self._warned_no_end:
                self._warned_no_end = True
                logger.warning(
                    "example %s: the chat template puts no end-of-turn special token after an answer (text "
                    "after it: %r), so the model is not taught to stop; fix the template (e.g. end answers "
                    "with the tokenizer's eos token %r)",
                    example_id,
                    text[spans[0].end : spans[0].end + 12] if spans else "",
                    self.tokenizer.eos_token,
                )
        return text, spans

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        texts, spans = [], []
        for row, example in enumerate(examples):
            text, example_spans = self.render(example, row)
            texts.append(text)
            spans.append(example_spans)
        has_images = any(example["images"] for example in examples)
        if has_images and not self.sees_images:
            raise CollatorError(
                f"example {next(e.get('id') for e in examples if e['images'])}: has an image, but the model is "
                "text-only (set data.image_mode=none)"
            )
        # As processor.apply_chat_template does: no second BOS when the template writes one.
        add_special = not starts_with_bos(self.tokenizer, texts[0])
        kwargs: dict[str, Any] = {"padding": True, "padding_side": "right", "return_tensors": "pt"}
        if has_images:
            kwargs["images"] = [list(example["images"]) for example in examples]
        batch = self.processor(text=texts, add_special_tokens=add_special, **kwargs)
        input_ids = batch["input_ids"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        lengths = batch["attention_mask"].sum(dim=1).tolist()
        first_answer = []
        for row, example in enumerate(examples):
            ids = input_ids[row, : lengths[row]].tolist()
            token_spans = self._token_spans(texts[row], spans[row], ids, list(example["images"]), add_special)
            for start, end in token_spans:
                labels[row, start:end] = input_ids[row, start:end]
            if not token_spans or all(end <= start for start, end in token_spans):
                raise CollatorError(f"example {example.get('id', row)}: no assistant tokens to learn from")
            first_answer.append(min(start for start, end in token_spans if end > start))
        batch["labels"] = labels
        if self.prefix_lm and "token_type_ids" in batch:
            # The prefix (image + first question) stays bidirectional; everything from the first answer
            # token on is causal, so no answer token sees the ones after it.
            token_types = torch.zeros_like(input_ids)
            for row, start in enumerate(first_answer):
                token_types[row, start : lengths[row]] = 1
            batch["token_type_ids"] = token_types
        if input_ids.shape[1] > self.max_length:
            batch = self._truncate(batch, examples)
        return dict(batch)

    def _token_spans(
        self, text: str, spans: list[CharSpan], ids: list[int], images: list[Any], add_special: bool
    ) -> list[tuple[int, int]]:
        """Token ranges (in the processor's ids) of the character spans."""
        encoded = self.tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
        text_ids: list[int] = encoded["input_ids"]
        offsets: list[tuple[int, int]] = encoded["offset_mapping"]
        image_positions = [i for i, t in enumerate(text_ids) if t == self.image_token_id]
        last_image = image_positions[-1] if image_positions else -1
        tail = len(text_ids) - last_image - 1
        # Fast path: the text after the last image placeholder tokenizes the same with and without the
        # image expansion, so text-only token i is processor token i + shift there. Some processors append
        # a token or two after the text (PaliGemma: "\n"): the tail is matched before them.
        shift, appended = None, 0
        for suffix in range(_MAX_PROCESSOR_SUFFIX + 1):
            end = len(ids) - suffix
            if suffix and tail < 4:
                break  # too few tokens to tell an appended token from a different tokenization
            if tail == 0 or (end >= tail and ids[end - tail : end] == text_ids[-tail:]):
                shift, appended = end - len(text_ids), suffix
                break
        result = []
        for span in spans:
            members = [i for i, (a, b) in enumerate(offsets) if b > a and b > span.start and a < span.end]
            if not members:
                result.append((0, 0))
                continue
            first, last = members[0], members[-1]
            if shift is not None and first > last_image:
                result.append((first + shift, last + 1 + shift))
            else:
                result.append(self._span_by_prefixes(text, span, ids, images, add_special, appended))
        return result

    def _span_by_prefixes(
        self, text: str, span: CharSpan, ids: list[int], images: list[Any], add_special: bool, appended: int
    ) -> tuple[int, int]:
        """Exact but slower: process the text up to each span boundary and compare with the full ids.

        ``appended`` tokens that the processor adds after any text (PaliGemma's newline) are not part of
        the prefix.
        """
        self.stats["fallback_alignments"] += 1

        def boundary(char: int) -> int:
            prefix = text[:char]
            n_images = prefix.count(self.image_token) if self.image_token else 0
            kwargs: dict[str, Any] = {"images": [images[:n_images]]} if n_images else {}
            out = self.processor(text=[prefix], add_special_tokens=add_special, **kwargs)
            prefix_ids = list(out["input_ids"][0])
            return min(_lcp(prefix_ids, ids), len(prefix_ids) - appended)

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
        # Every per-token tensor is cut with the ids: attention mask, labels, token types, and Mllama's
        # cross_attention_mask (batch × tokens × images × tiles).
        shape = tuple(batch["input_ids"].shape)
        for key in list(batch.keys()):
            value = batch[key]
            if hasattr(value, "shape") and value.dim() >= 2 and tuple(value.shape[:2]) == shape:
                batch[key] = value[:, :cut]
        return batch


def check_answers_fit(collator: ConversationCollator, dataset: ConversationDataset) -> None:
    """Refuse a ``max_length`` that leaves no answer token to learn from, before any model loads.

    A conversation cut before its first answer token keeps no label: it teaches nothing (its loss is
    0), and a run made only of such conversations would be saved as a model that learned nothing.
    Up to ``TRUNCATION_CHECKED`` conversations spread evenly over ``dataset`` are tokenized as training
    tokenizes them. ``ConfigError`` when none of them keeps an answer token; a warning when some lose
    every one.
    """
    n = len(dataset)
    if n == 0:
        return
    count = min(TRUNCATION_CHECKED, n)
    indices = sorted({round(i * (n - 1) / max(count - 1, 1)) for i in range(count)})
    untruncated: ConversationCollator | None = None
    lost: list[tuple[str, int]] = []  # (conversation id, position of its first answer token)
    for index in indices:
        example = dataset[index]
        if (collator([example])["labels"] != IGNORE_INDEX).any():
            continue
        if untruncated is None:
            untruncated = ConversationCollator(
                collator.processor, max_length=sys.maxsize, prompt_format=collator.prompt_format
            )
        labels = untruncated([example])["labels"][0]
        first = int((labels != IGNORE_INDEX).nonzero()[0, 0])
        lost.append((str(example.get("id", index)), first))
    if not lost:
        return
    starts = sorted(position for _, position in lost)
    if len(lost) == len(indices):
        raise ConfigError(
            f"config key 'max_length': truncating to {collator.max_length} tokens leaves no answer token to "
            "learn from: "
            f"in each of the {len(indices)} conversations checked the answer starts at token {starts[0]} or "
            f"later (e.g. {lost[0][0]!r}), so training would learn nothing; raise max_length (above "
            f"{starts[-1]} keeps an answer token of every one checked)"
        )
    logger.warning(
        "max_length=%d cuts every answer token of %d of %d conversations checked (e.g. %r, whose answer "
        "starts at token %d): they teach nothing",
        collator.max_length,
        len(lost),
        len(indices),
        lost[0][0],
        lost[0][1],
    )
