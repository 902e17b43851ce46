"""The network's 1,000 ImageNet concepts and the words that reach them.

indexer/concepts.json is built at development time by scripts/build_concepts.py
from timm's list of the classifier's synsets and WordNet 3.0's hierarchy (sources
and licences: indexer/CONCEPTS.md); nothing is fetched at run time. A word reaches
a class when it names the class or any synset above it: "dog" reaches the 118
breeds, "vehicle" 67 classes. Pure lookups, no I/O after loading.
"""

from __future__ import annotations

import bisect
import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

TABLE = Path(__file__).with_name("concepts.json")
CLASSES = 1000


def normalise(text: str) -> str:
    """What a word is looked up as: lower case, '_' and runs of blanks as one space."""
    return re.sub(r"[\s_]+", " ", text).strip().lower()


@dataclass(frozen=True)
class Concepts:
    synsets: tuple[str, ...]  # WordNet ids in the classifier's output order
    names: tuple[str, ...]  # each class's first lemma, in plain words
    words: Mapping[str, tuple[int, ...]]  # word -> the classes it reaches
    plurals: Mapping[str, str]  # plural -> the word it is the plural of

    @classmethod
    def load(cls, path: Path = TABLE) -> Concepts:
        table = json.loads(path.read_text(encoding="utf-8"))
        if table.get("version") != 1 or len(table["synsets"]) != CLASSES:
            raise ValueError(f"{path}: not a concepts table of {CLASSES} classes (version 1)")
        return cls(
            synsets=tuple(table["synsets"]),
            names=tuple(table["names"]),
            words={w: tuple(c) for w, c in table["words"].items()},
            plurals=dict(table["plurals"]),
        )

    def word(self, text: str) -> str | None:
        """The vocabulary word `text` is (its plural folded), or None."""
        key = normalise(text)
        key = self.plurals.get(key, key)
        return key if key in self.words else None

    def classes(self, text: str) -> tuple[int, ...]:
        """The classes `text` reaches; () for a word the vocabulary lacks."""
        key = self.word(text)
        return self.words[key] if key is not None else ()

    @cached_property
    def _sorted(self) -> list[str]:
        return sorted(self.words)

    def complete(self, prefix: str, limit: int = 10) -> list[str]:
        """Words that start with `prefix`, the most specific (fewest classes) and
        shortest first: what autocompletion offers."""
        key = normalise(prefix)
        if not key:
            return []
        at = bisect.bisect_left(self._sorted, key)
        found = []
        for word in self._sorted[at:]:
            if not word.startswith(key):
                break
            found.append(word)
        return sorted(found, key=lambda w: (len(self.words[w]), len(w), w))[:limit]

    def suggest(self, text: str, limit: int = 5) -> list[str]:
        """Close vocabulary words for one it lacks (spelling slips, other forms)."""
        return difflib.get_close_matches(normalise(text), self._sorted, n=limit, cutoff=0.75)
