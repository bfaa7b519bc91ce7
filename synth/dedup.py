"""Exact and near-duplicate detection over texts.

Exact duplicates compare a normalised form (case, accents, punctuation and whitespace folded).
Near duplicates compare word-trigram shingles by Jaccard similarity; candidates are found through an
inverted index on shingles so the cost grows with the overlap between texts, not with n².
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import defaultdict

_NON_WORD = re.compile(r"[^\w\s]+", re.UNICODE)
_SPACES = re.compile(r"\s+")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = _NON_WORD.sub(" ", text.lower())
    return _SPACES.sub(" ", text).strip()


def shingles(text: str, n: int = 3) -> frozenset[str]:
    words = normalise(text).split()
    if len(words) < n:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


class Deduper:
    """Keeps the first of each group of (near-)duplicates, in the order texts are offered."""

    def __init__(self, near_threshold: float = 0.7):
        self.near_threshold = near_threshold
        self._exact: set[str] = set()
        self._shingles: list[frozenset[str]] = []
        self._index: dict[str, list[int]] = defaultdict(list)
        self.exact_dropped = 0
        self.near_dropped = 0

    def check(self, text: str) -> str | None:
        """'exact' or 'near' if `text` duplicates a kept text, else None (does not keep it)."""
        if normalise(text) in self._exact:
            return "exact"
        if self._near_duplicate(shingles(text)):
            return "near"
        return None

    def offer(self, text: str) -> bool:
        """Keep `text` unless it duplicates a kept text; returns whether it was kept."""
        verdict = self.check(text)
        if verdict == "exact":
            self.exact_dropped += 1
            return False
        if verdict == "near":
            self.near_dropped += 1
            return False
        self._keep(text)
        return True

    def _keep(self, text: str) -> None:
        self._exact.add(normalise(text))
        grams = shingles(text)
        position = len(self._shingles)
        self._shingles.append(grams)
        for gram in grams:
            self._index[gram].append(position)

    def _near_duplicate(self, grams: frozenset[str]) -> bool:
        # A text sharing >= t of the union with `grams` must contain at least one of any
        # len - ceil(t * len) + 1 of its shingles, so probing the rarest ones finds every candidate.
        probe_count = len(grams) - math.ceil(self.near_threshold * len(grams)) + 1
        rarest = sorted(grams, key=lambda gram: len(self._index.get(gram, ())))[:probe_count]
        candidates = {position for gram in rarest for position in self._index.get(gram, ())}
        for position in candidates:
            other = self._shingles[position]
            shared = len(grams & other)
            if shared / (len(grams) + len(other) - shared) >= self.near_threshold:
                return True
        return False


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0
