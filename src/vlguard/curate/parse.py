"""Reading the writer model's answers strictly: one JSON object with exactly the fields asked for.

``extract_json_object`` finds the object: the whole answer, the one fenced code block in it, or the text
from its first ``{`` to its last ``}`` (models like to say "Here it is:" first). It is parsed by
``vlguard.fileio.parse_json`` (depth limit, no lone surrogates) and must be an object. ``parse_label``
and ``parse_pairs`` then check every field's presence, type and length and, for labels, the category
names against the taxonomy. Anything wrong is a ``ParseError`` whose message says what, in words the
writer can act on: it goes back to the model in the retry prompt, and into the rejects file when the
retries run out. Fields the model adds beyond those asked for are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from vlguard.curate.inputs import UserLabel
from vlguard.curate.taxonomy import Taxonomy
from vlguard.fileio import JsonError, parse_json
from vlguard.records import InstructionKey, InstructionResponse

MAX_INSTRUCTION_CHARS = 2_000
MAX_RESPONSE_CHARS = 8_000
HARMFUL_FIELDS = ("instruction", "response")
SAFE_FIELDS = ("safe_instruction", "safe_response", "unsafe_instruction", "unsafe_response")
_FENCE = re.compile(r"```[A-Za-z]*[ \t]*\n?(.*?)```", re.DOTALL)

LabelSource = Literal["user", "model", "user+model"]


class ParseError(ValueError):
    """A writer answer that cannot be used; the message says why (it is shown to the writer on retry)."""


@dataclass(frozen=True)
class Label:
    """An image's label: safe, or harmful with its category and subcategory; who decided it and why."""

    safe: bool
    category: str | None
    subcategory: str | None
    source: LabelSource
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form kept in ``labels.jsonl``."""
        return {
            "safe": self.safe,
            "category": self.category,
            "subcategory": self.subcategory,
            "source": self.source,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Label:
        """Read back ``to_dict``."""
        return cls(d["safe"], d.get("category"), d.get("subcategory"), d["source"], d.get("reason", ""))


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def extract_json_object(text: str) -> dict[str, Any]:
    """The one JSON object in a model's answer (see the module docstring); ``ParseError`` otherwise."""
    stripped = text.strip()
    if not stripped:
        raise ParseError("the answer is empty")
    fences = _FENCE.findall(stripped)
    if len(fences) > 1:
        raise ParseError(f"the answer has {len(fences)} code blocks; give exactly one JSON object")
    candidate = fences[0].strip() if fences else stripped
    start, end = candidate.find("{"), candidate.rfind("}")
    if start == -1 or end < start:
        raise ParseError("the answer holds no JSON object")
    try:
        value = parse_json(candidate[start : end + 1])
    except JsonError as err:
        raise ParseError(f"the answer is not valid JSON: {err.detail()}") from None
    if not isinstance(value, dict):
        raise ParseError(f"expected a JSON object, got {_type_name(value)}")
    return value


def _text_field(data: dict[str, Any], key: str, limit: int) -> str:
    if key not in data:
        raise ParseError(f"the field {key!r} is missing")
    value = data[key]
    if not isinstance(value, str):
        raise ParseError(f"the field {key!r} must be a string, not {_type_name(value)}")
    if not value.strip():
        raise ParseError(f"the field {key!r} is empty")
    if len(value) > limit:
        raise ParseError(f"the field {key!r} is {len(value):,} characters long, over {limit:,}")
    return value.strip()


def _optional_name(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ParseError(f"the field {key!r} must be a string or null, not {_type_name(value)}")
    return value.strip() or None


def parse_label(text: str, taxonomy: Taxonomy, known: UserLabel | None = None) -> Label:
    """The label in a writer's answer, merged with what the user already said (the user's values win).

    ``known`` is the user's partial label (a complete one never reaches the writer).

    The merged label must be consistent: a safe image has no category; a harmful one has a category and
    a subcategory of the taxonomy (names resolved as ``Taxonomy.resolve`` does).
    """
    data = extract_json_object(text)
    if "safe" not in data:
        raise ParseError("the field 'safe' is missing")
    if not isinstance(data["safe"], bool):
        raise ParseError(f"the field 'safe' must be true or false, not {data['safe']!r}")
    safe: bool = data["safe"]
    category, subcategory = _optional_name(data, "category"), _optional_name(data, "subcategory")
    reason = data.get("reason") if isinstance(data.get("reason"), str) else ""
    source: LabelSource = "model"
    if known is not None and (known.safe is not None or known.category is not None):
        source = "user+model"
        safe = known.safe if known.safe is not None else safe
        if known.category is not None:
            # The model's subcategory is kept when it belongs to the user's category (resolve checks that).
            category = known.category
            subcategory = known.subcategory or subcategory
    if safe:
        if category is not None or subcategory is not None:
            raise ParseError("a safe image must have null category and subcategory")
        return Label(True, None, None, source, str(reason)[:500])
    try:
        category, subcategory = taxonomy.resolve(category, subcategory)
    except ValueError as err:
        raise ParseError(str(err)) from None
    return Label(False, category, subcategory, source, str(reason)[:500])


def parse_pairs(text: str, safe: bool) -> tuple[InstructionResponse, ...]:
    """The instruction/response pairs in a writer's answer: one for a harmful image, two for a safe one."""
    data = extract_json_object(text)
    keys: tuple[tuple[InstructionKey, str, str], ...] = (
        (("safe_instruction", "safe_instruction", "safe_response"), ("unsafe_instruction", "unsafe_instruction", "unsafe_response"))
        if safe
        else (("instruction", "instruction", "response"),)
    )  # fmt: skip
    pairs = []
    for key, instruction_field, response_field in keys:
        instruction = _text_field(data, instruction_field, MAX_INSTRUCTION_CHARS)
        response = _text_field(data, response_field, MAX_RESPONSE_CHARS)
        if " ".join(instruction.split()).casefold() == " ".join(response.split()).casefold():
            raise ParseError(f"{response_field!r} repeats {instruction_field!r}; write the response")
        pairs.append(InstructionResponse(key=key, instruction=instruction, response=response))
    if safe and _same(pairs[0].instruction, pairs[1].instruction):
        raise ParseError("'safe_instruction' and 'unsafe_instruction' are the same request")
    return tuple(pairs)


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()
