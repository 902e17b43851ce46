"""Words: a query's text read against the concept vocabulary, images ranked by
the probability mass on the classes its words reach, and each image's tags.

The vocabulary (indexer.concepts) and the snapshot's inverted file of top
concepts (indexer.concept_scores.ConceptIndex) are made once per snapshot, on the
first word request, and kept with it (state.Derived).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.concept_scores import ConceptIndex, Ranked, rank, tags
from indexer.concepts import Concepts, normalise

from .errors import NoConcepts
from .state import Live

# Words read from a query at most, and the longest vocabulary phrase looked for.
MAX_WORDS = 8
_LONGEST_PHRASE = 5
# With an uploaded image too, the images a word steers to: at least this mass.
STEER_FLOOR = 0.1


@dataclass(frozen=True)
class Words:
    vocabulary: Concepts
    index: ConceptIndex
    top1: np.ndarray  # class -> images whose most probable class it is

    def images(self, reach: tuple[int, ...]) -> int:
        """Images whose most probable class is one the word reaches."""
        return int(self.top1[list(reach)].sum()) if reach else 0


def words_of(live: Live) -> Words:
    """The live snapshot's words; NoConcepts when it has no concept scores."""
    concepts = live.snapshot.concepts
    entry = live.snapshot.manifest.concepts
    if concepts is None or entry is None:
        raise NoConcepts()

    def make() -> Words:
        index = ConceptIndex(concepts.classes, concepts.probs, entry.classes)
        top1 = np.bincount(np.asarray(concepts.classes[:, 0]), minlength=entry.classes)
        return Words(Concepts.load(), index, top1)

    return live.derived.get("words", make)


@dataclass(frozen=True)
class Reading:
    """What a query's text says: the vocabulary words found in it (longest phrase
    first, "great white shark" as one), and the rest, each with suggestions."""

    words: tuple[str, ...]
    unknown: tuple[str, ...]
    suggestions: tuple[str, ...]


def read_query(vocabulary: Concepts, text: str) -> Reading:
    tokens = normalise(text.replace(",", " ")).split(" ")[: MAX_WORDS * _LONGEST_PHRASE]
    tokens = [t for t in tokens if t]
    words: list[str] = []
    unknown: list[str] = []
    at = 0
    while at < len(tokens) and len(words) < MAX_WORDS:
        for end in range(min(len(tokens), at + _LONGEST_PHRASE), at, -1):
            word = vocabulary.word(" ".join(tokens[at:end]))
            if word is not None:
                if word not in words:
                    words.append(word)
                at = end
                break
        else:
            unknown.append(tokens[at])
            at += 1
    suggestions: list[str] = []
    for token in unknown:
        for close in vocabulary.suggest(token) or vocabulary.complete(token, limit=3):
            if close not in suggestions and close not in words:
                suggestions.append(close)
    return Reading(tuple(words), tuple(unknown), tuple(suggestions[:8]))


def rank_words(words: Words, reading: Reading, k: int, within: np.ndarray | None = None) -> Ranked:
    """The `k` images of most mass on the reading's words, the best word scoring;
    only among the rows `within`, when given (service.filters)."""
    per_word = [words.index.mass(words.vocabulary.classes(w)) for w in reading.words]
    if within is not None:
        outside = np.ones(len(words.index.classes), dtype=bool)
        outside[within] = False
        per_word = [(np.where(outside, 0, mass), best) for mass, best in per_word]
    return rank(per_word, k)


def matched_word(words: Words, reading: Reading, cls: int) -> str:
    """Which of the reading's words reaches class `cls` (the first that does)."""
    return next(w for w in reading.words if cls in words.vocabulary.classes(w))


def steer(
    words: Words,
    reading: Reading,
    vector: np.ndarray,
    vectors: np.ndarray,
    k: int,
    within: np.ndarray | None = None,
) -> Ranked:
    """With an uploaded image and words: the images the words reach (mass at least
    STEER_FLOOR; among `within` if given), ranked by similarity to the image;
    scores are cosines."""
    reached = rank_words(words, reading, len(words.index.classes), within)
    keep = reached.scores >= STEER_FLOOR
    rows, best = reached.rows[keep], reached.best_class[keep]
    sims = np.asarray(vectors[np.sort(rows)], np.float32) @ np.asarray(vector, np.float32)
    order = np.argsort(rows)
    rows, best = rows[order], best[order]
    top = np.lexsort((rows, -sims))[:k]
    return Ranked(rows[top], sims[top].astype(np.float32), best[top])


def image_tags(live: Live, row: int) -> list[tuple[str, float]]:
    """An image's concepts worth showing, as (class name, probability), best first;
    [] when the snapshot has none."""
    concepts = live.snapshot.concepts
    if concepts is None:
        return []
    names = words_of(live).vocabulary.names
    return [(names[c], p) for c, p in tags(concepts.classes[row], concepts.probs[row])]
