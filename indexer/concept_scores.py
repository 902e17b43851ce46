"""Each image's concepts as the classifier scores them, and ranking by words.

The exported model gives every image the probabilities of its 1,000 ImageNet
classes (indexer.models); a snapshot keeps each image's `TOP_K` most probable
classes with their probabilities (concepts/classes.npy uint16 and
concepts/probs.npy float16, both (N, TOP_K), best first), memory-mapped like the
vectors. A word reaches a set of classes (indexer.concepts); an image's score for
it is the probability mass its top classes put on that set. Ten classes hold
nearly all of the mass (the eleventh is below 0.01 in nearly every photo), so
little is lost. Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

TOP_K = 10
_BLOB_BYTES = TOP_K * 4  # uint16 classes, then float16 probabilities


def top_concepts(probs: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """The `k` most probable classes of each row of `probs` (N, C), best first:
    (N, k) uint16 classes and (N, k) float16 probabilities."""
    probs = np.asarray(probs, dtype=np.float32)
    part = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    top = np.take_along_axis(probs, part, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    classes = np.take_along_axis(part, order, axis=1)
    return classes.astype(np.uint16), np.take_along_axis(top, order, axis=1).astype(np.float16)


def to_blob(classes: np.ndarray, probs: np.ndarray) -> bytes:
    """One image's top concepts as the embedding cache stores them."""
    return (
        np.ascontiguousarray(classes, np.uint16).tobytes()
        + np.ascontiguousarray(probs, np.float16).tobytes()
    )


def from_blob(blob: bytes | None) -> tuple[np.ndarray, np.ndarray] | None:
    """`to_blob` read back; None for a missing or torn one."""
    if blob is None or len(blob) != _BLOB_BYTES:
        return None
    half = _BLOB_BYTES // 2
    return np.frombuffer(blob[:half], np.uint16), np.frombuffer(blob[half:], np.float16)


@dataclass(frozen=True)
class Ranked:
    rows: np.ndarray  # snapshot rows, best first
    scores: np.ndarray  # float32 probability mass on the word's classes, in (0, 1]
    best_class: np.ndarray  # each row's most probable class among the word's


@dataclass(frozen=True)
class ConceptIndex:
    """Each class's images (an inverted file over the top concepts): ranking a word
    reads only the postings of the classes it reaches, not every image."""

    classes: np.ndarray  # (N, K) uint16
    probs: np.ndarray  # (N, K) float16
    n_classes: int
    _order: np.ndarray = field(init=False, repr=False)  # flat positions sorted by class
    _starts: np.ndarray = field(init=False, repr=False)  # class -> first of its postings

    def __post_init__(self) -> None:
        flat = np.asarray(self.classes).reshape(-1)
        # A stable sort of 16-bit keys is a radix sort: linear in N * K.
        order = np.argsort(flat, kind="stable").astype(np.int64)
        starts = np.searchsorted(flat[order], np.arange(self.n_classes + 1))
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "_starts", starts)

    def _postings(self, reach: Sequence[int]) -> np.ndarray:
        """Flat positions (row * K + rank) holding any class of `reach`."""
        spans = [self._order[self._starts[c] : self._starts[c + 1]] for c in sorted(set(reach))]
        return np.concatenate(spans) if spans else np.zeros(0, np.int64)

    def mass(self, reach: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Every image's probability mass on the classes `reach` (N,) float32 (0 for
        an image with none of them among its top concepts), and its most probable
        class of `reach` (N,) int64, -1 where it has none."""
        at = self._postings(reach)
        count, k = self.classes.shape
        rows_of = at // k
        p = np.asarray(self.probs).reshape(-1)[at].astype(np.float32)
        total = np.bincount(rows_of, weights=p, minlength=count).astype(np.float32)
        # The top concepts are best first: an image's lowest-ranked posting is its
        # most probable class of the word.
        first = np.full(count, count * k, np.int64)
        np.minimum.at(first, rows_of, at)
        flat = np.append(np.asarray(self.classes).reshape(-1).astype(np.int64), -1)
        return total, flat[first]


def rank(per_word: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> Ranked:
    """The `k` images of highest mass, each image scored by the best of the words
    (`ConceptIndex.mass` of each): a query's words are alternatives, "cat dog"
    finds cats and dogs. Images of no mass are never results; ties go to the
    lower row, so results are stable."""
    if not per_word:
        return Ranked(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.int64))
    scores, best = per_word[0]
    for more, more_best in per_word[1:]:
        better = more > scores
        scores = np.where(better, more, scores)
        best = np.where(better, more_best, best)
    hits = np.flatnonzero(scores > 0)
    if len(hits) > k:
        hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
    hits = hits[np.lexsort((hits, -scores[hits]))]
    return Ranked(hits, scores[hits], best[hits])


def tags(classes: np.ndarray, probs: np.ndarray, floor: float = 0.05) -> list[tuple[int, float]]:
    """One image's concepts worth showing: its classes of probability at least
    `floor` (always its first), best first."""
    out = [(int(c), float(p)) for c, p in zip(classes, probs, strict=True) if p >= floor]
    return out or [(int(classes[0]), float(probs[0]))]
