"""Near-duplicate instructions: Jaccard similarity of normalised character 5-grams, with a fast index.

Text is normalised (Unicode NFKC, case-folded, punctuation to spaces, runs of spaces to one) and cut
into overlapping character 5-grams; two instructions are near-duplicates when the Jaccard similarity
of their 5-gram sets is at least ``THRESHOLD`` = 0.7. Character n-grams see rewordings that keep most
of the words ("the name and personal history of the person" / "the name and personal background of
the person") and small edits, and need no tokenizer, so they work for any language.

Why 0.7, measured on VLGuard itself (the first 600 test instructions against all 2,977 train
instructions; ``scripts/curate_similarity.py`` prints these figures): 64 test instructions occur verbatim
in train, 78 reach 0.8, 101 reach 0.7, 120 reach 0.65, 145 reach 0.6. Around 0.7 the pairs ask the same
thing in other words or number ("What products are being advertised in this image?" / "What product is
being advertised ..."; "... seem to be displaying?" / "... seem to be expressing?"); around 0.6 many ask
about something else ("What food item is depicted in the image?" / "What is depicted in the image?"),
which is no leak. A stricter (lower) threshold is a ``--similarity-threshold`` away.

``NearDuplicateIndex`` finds, for a new text, the most similar indexed text at or above the threshold
without comparing it with everything: prefix filtering (Chaudhuri et al., ICDE 2006; Bayardo et al.,
WWW 2007). With the n-grams of every set in one global order (rarest in the reference texts first), two
sets with Jaccard ≥ t share an n-gram among the first ``|x| - ceil(t·|x|) + 1`` of each, so only texts
sharing one of those rare prefix n-grams are compared exactly. The result is exact, not approximate.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

NGRAM = 5
THRESHOLD = 0.7
_NOT_WORD = re.compile(r"[^\w\s]+")


def normalise(text: str) -> str:
    """NFKC, case-folded, punctuation replaced by spaces, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_NOT_WORD.sub(" ", text).split())


def shingles(text: str, n: int = NGRAM) -> frozenset[str]:
    """The character n-grams of the normalised text, padded with a space at each end."""
    padded = f" {normalise(text)} "
    if len(padded) <= n:
        return frozenset({padded})
    return frozenset(padded[i : i + n] for i in range(len(padded) - n + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """|a ∩ b| / |a ∪ b| (1.0 for two empty sets)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True)
class Match:
    """The indexed text most similar to a query: where it is from, its key, the text and the similarity."""

    source: str
    key: str
    text: str
    similarity: float

    def to_dict(self) -> dict[str, object]:
        """The JSON form kept in the check verdicts."""
        return {
            "source": self.source,
            "key": self.key,
            "text": self.text,
            "similarity": round(self.similarity, 4),
        }


class NearDuplicateIndex:
    """Texts indexed for ``best``: the most similar one at or above ``threshold`` (see the module docstring).

    ``reference`` texts fix the n-gram order (their document frequencies); texts added later, such as the
    curated instructions accepted so far, are ordered the same way (unseen n-grams count as rarest).
    """

    def __init__(
        self, reference: Iterable[tuple[str, str, str]] = (), *, threshold: float = THRESHOLD, n: int = NGRAM
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"the similarity threshold must be in (0, 1], not {threshold}")
        self.threshold = threshold
        self.n = n
        entries = [(text, source, key, shingles(text, n)) for text, source, key in reference]
        self._frequency: Counter[str] = Counter(g for *_, grams in entries for g in grams)
        self._postings: dict[str, list[int]] = {}
        self._entries: list[tuple[str, str, str, frozenset[str]]] = []
        for text, source, key, grams in entries:
            self._add(text, source, key, grams)

    def __len__(self) -> int:
        return len(self._entries)

    def _prefix(self, grams: frozenset[str]) -> list[str]:
        ordered = sorted(grams, key=lambda g: (self._frequency.get(g, 0), g))
        return ordered[: len(ordered) - math.ceil(self.threshold * len(ordered)) + 1]

    def _add(self, text: str, source: str, key: str, grams: frozenset[str]) -> None:
        index = len(self._entries)
        self._entries.append((text, source, key, grams))
        for gram in self._prefix(grams):
            self._postings.setdefault(gram, []).append(index)

    def add(self, text: str, source: str, key: str) -> None:
        """Index one more text (e.g. an accepted curated instruction)."""
        self._add(text, source, key, shingles(text, self.n))

    def matches(self, text: str) -> list[Match]:
        """Every indexed text with similarity ≥ threshold, most similar first (ties in index order)."""
        grams = shingles(text, self.n)
        candidates = {i for gram in self._prefix(grams) for i in self._postings.get(gram, ())}
        found = []
        for i in sorted(candidates):
            other_text, source, key, other = self._entries[i]
            similarity = jaccard(grams, other)
            if similarity >= self.threshold:
                found.append(Match(source, key, other_text, similarity))
        return sorted(found, key=lambda m: -m.similarity)

    def best(self, text: str) -> Match | None:
        """The most similar indexed text with similarity ≥ threshold, or None."""
        found = self.matches(text)
        return found[0] if found else None
