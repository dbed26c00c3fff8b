"""The harm taxonomy a curated dataset is labelled with: VLGuard's own, or a user's file.

A taxonomy is a list of categories, each with a definition and subcategories; each subcategory has a
definition and optional examples. The writer model sees the definitions and examples when it labels an
image and writes its pairs, and every category name it answers with must be one of the taxonomy's
(``Taxonomy.resolve``).

VLGuard's taxonomy (``DEFAULT_TAXONOMY``) keeps the exact strings of the released data, so that a curated
dataset mixes with it category for category: the ``harmful_category`` / ``harmful_subcategory`` values
of ``ys-zong/VLGuard`` ``data/train.json`` and ``data/test.json`` are privacy / personal data; risky
behavior / professional advice, political, sexually explicit, violence; deception / disinformation;
discrimination / sex, race, other (the paper, arXiv 2402.02207 §3, calls the last category hateful
speech; the data says ``discrimination``). The definitions are our own wording.

A user's taxonomy file is YAML (``.yaml`` / ``.yml``) or JSON::

    name: my-domain                # optional
    categories:
      - name: medical misinformation
        definition: claims about health that contradict medical evidence
        examples: [...]            # optional
        subcategories:
          - name: unproven cures
            definition: products or practices sold as cures without evidence
            examples: ["a poster advertising a herbal tea that 'cures' diabetes"]

Every problem (missing or unknown field, wrong type, empty or duplicate name) is listed in one
``DataValidationError`` naming the file, the category and the field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlguard.data.jsonio import read_json
from vlguard.errors import DataValidationError, Problem
from vlguard.fileio import read_text

MAX_NAME_CHARS = 100
MAX_DEFINITION_CHARS = 2_000
MAX_EXAMPLES = 20


@dataclass(frozen=True)
class Subcategory:
    """One subcategory: its name (as written in the dataset), a definition and optional examples."""

    name: str
    definition: str
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class Category:
    """One harm category with its subcategories."""

    name: str
    definition: str
    subcategories: tuple[Subcategory, ...]
    examples: tuple[str, ...] = ()


def _key(name: str) -> str:
    """How names are compared with what a model writes: case and surrounding or repeated spaces ignored."""
    return " ".join(name.split()).casefold()


@dataclass(frozen=True)
class Taxonomy:
    """Categories and subcategories; ``source`` says where it came from (``default`` or a file path)."""

    name: str
    categories: tuple[Category, ...]
    source: str = "default"

    def to_dict(self) -> dict[str, Any]:
        """The taxonomy as data (what the hash covers; ``source`` is not part of it)."""
        return {
            "name": self.name,
            "categories": [
                {
                    "name": c.name,
                    "definition": c.definition,
                    "examples": list(c.examples),
                    "subcategories": [
                        {"name": s.name, "definition": s.definition, "examples": list(s.examples)}
                        for s in c.subcategories
                    ],
                }
                for c in self.categories
            ],
        }

    @property
    def sha256(self) -> str:
        """sha256 of the canonical JSON of ``to_dict()``: changes with any name, definition or example."""
        text = json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def category(self, name: str) -> Category | None:
        """The category called ``name`` (compared as ``resolve`` does), or None."""
        return next((c for c in self.categories if _key(c.name) == _key(name)), None)

    def resolve(self, category: str | None, subcategory: str | None) -> tuple[str, str]:
        """The canonical (category, subcategory) names for what a model or a user wrote.

        Case and extra spaces are forgiven; anything else is a ``ValueError`` whose message says what is
        wrong and lists the names to choose from. A missing category is inferred from a subcategory
        that belongs to one category only; a missing subcategory from a category that has only one.
        """
        found = self.category(category) if category else None
        if category and found is None:
            raise ValueError(f"unknown category {category!r}; choose from {self.category_names()}")
        if subcategory:
            candidates = [found] if found is not None else list(self.categories)
            matches = [
                (c, s) for c in candidates for s in c.subcategories if _key(s.name) == _key(subcategory)
            ]
            if not matches:
                where = f"category {found.name!r}" if found is not None else "the taxonomy"
                names = [s.name for c in candidates for s in c.subcategories]
                raise ValueError(f"unknown subcategory {subcategory!r} in {where}; choose from {names}")
            if len(matches) > 1:
                raise ValueError(
                    f"subcategory {subcategory!r} is in several categories "
                    f"({[c.name for c, _ in matches]}); give the category too"
                )
            return matches[0][0].name, matches[0][1].name
        if found is None:
            raise ValueError("a harmful image needs a category and a subcategory")
        if len(found.subcategories) == 1:
            return found.name, found.subcategories[0].name
        raise ValueError(
            f"category {found.name!r} has several subcategories; choose one of "
            f"{[s.name for s in found.subcategories]}"
        )

    def category_names(self) -> list[str]:
        """The category names, in order."""
        return [c.name for c in self.categories]

    def subcategory(self, category: str, subcategory: str) -> Subcategory:
        """The subcategory object of canonical names (as returned by ``resolve``)."""
        found = self.category(category)
        assert found is not None, category
        return next(s for s in found.subcategories if s.name == subcategory)


def _sub(name: str, definition: str) -> Subcategory:
    return Subcategory(name, definition)


DEFAULT_TAXONOMY = Taxonomy(
    name="vlguard",
    categories=(
        Category(
            "privacy",
            "content that exposes, or invites exposing, information about identifiable private people",
            (
                _sub(
                    "personal data",
                    "identity documents, addresses, phone numbers, account or medical records, or a private "
                    "person shown in a way that invites identifying, locating or profiling them",
                ),
            ),
        ),
        Category(
            "risky behavior",
            "content where following or spreading what the image shows or invites could put people at risk",
            (
                _sub(
                    "professional advice",
                    "medical, legal or financial matters where acting on an assistant's answer instead of a "
                    "qualified professional's could cause real harm",
                ),
                _sub(
                    "political",
                    "partisan campaigning, propaganda or inflammatory content about contested political "
                    "events or figures",
                ),
                _sub("sexually explicit", "nudity or sexual content"),
                _sub(
                    "violence",
                    "weapons used against people, injuries, fights, self-harm, or content that glorifies or "
                    "incites violence",
                ),
            ),
        ),
        Category(
            "deception",
            "content made to mislead",
            (
                _sub(
                    "disinformation",
                    "fabricated news, manipulated images, hoaxes, scams or misleading advertising",
                ),
            ),
        ),
        Category(
            "discrimination",
            "content that demeans or stereotypes people for who they are (the paper's hateful speech)",
            (
                _sub("sex", "content demeaning people because of their sex or gender"),
                _sub("race", "content demeaning people because of their race or ethnicity"),
                _sub(
                    "other",
                    "content demeaning people for another protected characteristic: religion, disability, "
                    "age, sexual orientation, nationality",
                ),
            ),
        ),
    ),
)


# ---------------------------------------------------------------------------------------------------
# Reading a user's file


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _read_raw(path: Path) -> Any:
    """The parsed file: JSON through the strict reader, YAML through ``yaml.safe_load``."""
    if path.suffix.lower() == ".json":
        return read_json(path)
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise DataValidationError(
            [Problem(str(path), "", "", "a taxonomy file is .yaml, .yml or .json (by its extension)")]
        )
    import yaml

    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1} column {where.column + 1}" if where is not None else ""
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise DataValidationError([Problem(str(path), "", "", f"not valid YAML{at}: {reason}")]) from None
    except RecursionError:
        raise DataValidationError([Problem(str(path), "", "", "not a taxonomy: nested too deeply")]) from None


Sink = Callable[[str, str, str], None]  # (record, field, message)


def _check_keys(raw: dict[str, Any], allowed: Sequence[str], record: str, field: str, problem: Sink) -> None:
    for key in raw:
        if key not in allowed:
            where = f"{field}.{key}" if field else str(key)
            problem(record, where, f"unknown field (expected {', '.join(allowed)})")


def _text(
    raw: dict[str, Any], key: str, limit: int, record: str, field: str, problem: Sink, *, name: bool = False
) -> str:
    where = f"{field}.{key}" if field else key
    value = raw.get(key)
    if key not in raw:
        problem(record, where, "missing field")
    elif not isinstance(value, str):
        problem(record, where, f"expected text, got {_type_name(value)}")
    elif not value.strip():
        problem(record, where, "empty")
    elif len(value) > limit:
        problem(record, where, f"{len(value):,} characters, over the limit of {limit:,}")
    elif name and ("\n" in value or "\r" in value):
        problem(record, where, "a name is one line")
    else:
        return " ".join(value.split()) if name else value.strip()
    return ""


def _examples(raw: dict[str, Any], record: str, field: str, problem: Sink) -> tuple[str, ...]:
    where = f"{field}.examples" if field else "examples"
    value = raw.get("examples", [])
    if value is None:
        return ()
    if not isinstance(value, list):
        problem(record, where, f"expected a list of texts, got {_type_name(value)}")
        return ()
    if len(value) > MAX_EXAMPLES:
        problem(record, where, f"{len(value)} examples, over the limit of {MAX_EXAMPLES}")
    examples = []
    for i, example in enumerate(value):
        if not isinstance(example, str) or not example.strip():
            problem(record, f"{where}[{i}]", f"expected a non-empty text, got {_type_name(example)}")
        elif len(example) > MAX_DEFINITION_CHARS:
            problem(record, f"{where}[{i}]", f"over the limit of {MAX_DEFINITION_CHARS:,} characters")
        else:
            examples.append(example.strip())
    return tuple(examples)


def parse_taxonomy(raw: Any, file: str) -> Taxonomy:
    """Validate the parsed content of a taxonomy file; ``DataValidationError`` listing every problem."""
    problems: list[Problem] = []

    def problem(record: str, field: str, message: str) -> None:
        problems.append(Problem(file, record, field, message))

    if not isinstance(raw, dict):
        raise DataValidationError(
            [Problem(file, "", "", f"a taxonomy is a mapping with 'categories', got {_type_name(raw)}")]
        )
    _check_keys(raw, ("name", "description", "categories"), "", "", problem)
    name = raw.get("name", Path(file).stem)
    if not isinstance(name, str) or not name.strip():
        problem("", "name", f"expected a non-empty text, got {_type_name(name)}")
        name = Path(file).stem
    entries = raw.get("categories")
    if not isinstance(entries, list) or not entries:
        problem("", "categories", f"expected a non-empty list of categories, got {_type_name(entries)}")
        entries = []
    categories: list[Category] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        record = f"categories[{i}]"
        if not isinstance(entry, dict):
            problem(record, "", f"expected a mapping, got {_type_name(entry)}")
            continue
        cat_name = _text(entry, "name", MAX_NAME_CHARS, record, "", problem, name=True)
        if cat_name:
            record = f"category {cat_name!r}"
            if _key(cat_name) in seen:
                problem(record, "name", "duplicate category name")
            seen.add(_key(cat_name))
        _check_keys(entry, ("name", "definition", "examples", "subcategories"), record, "", problem)
        definition = _text(entry, "definition", MAX_DEFINITION_CHARS, record, "", problem)
        examples = _examples(entry, record, "", problem)
        subcategories = _subcategories(entry.get("subcategories"), record, problem)
        categories.append(Category(cat_name, definition, subcategories, examples))
    if problems:
        raise DataValidationError(problems)
    return Taxonomy(name=" ".join(str(name).split()), categories=tuple(categories), source=file)


def _subcategories(raw: Any, record: str, problem: Sink) -> tuple[Subcategory, ...]:
    if not isinstance(raw, list) or not raw:
        problem(record, "subcategories", f"expected a non-empty list, got {_type_name(raw)}")
        return ()
    found: list[Subcategory] = []
    seen: set[str] = set()
    for j, entry in enumerate(raw):
        field = f"subcategories[{j}]"
        if not isinstance(entry, dict):
            problem(record, field, f"expected a mapping, got {_type_name(entry)}")
            continue
        _check_keys(entry, ("name", "definition", "examples"), record, field, problem)
        name = _text(entry, "name", MAX_NAME_CHARS, record, field, problem, name=True)
        if name and _key(name) in seen:
            problem(record, f"{field}.name", f"duplicate subcategory name {name!r}")
        seen.add(_key(name))
        definition = _text(entry, "definition", MAX_DEFINITION_CHARS, record, field, problem)
        found.append(Subcategory(name, definition, _examples(entry, record, field, problem)))
    return tuple(found)


def load_taxonomy(path: str | Path | None) -> Taxonomy:
    """The taxonomy in ``path`` (YAML or JSON, see the module docstring), or VLGuard's when None."""
    if path is None:
        return DEFAULT_TAXONOMY
    path = Path(path)
    if not path.is_file():
        reason = "it is a folder" if path.is_dir() else "no such file"
        raise DataValidationError([Problem(str(path), "", "", f"cannot read the taxonomy: {reason}")])
    return parse_taxonomy(_read_raw(path), str(path))
