"""Filters: which images a request may answer with, by folder (`label=`) and by
what the classifier sees (`concept=`), as sorted snapshot rows.

Several labels are alternatives, as are several concepts; labels and concepts
together must both hold. The label index and each concept's rows are made once
per snapshot (state.Derived).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, Query

from .errors import BadFilter
from .schemas import BadRequest
from .state import Live
from .words import STEER_FLOOR, read_query, words_of

MAX_VALUES = 50
# The 422 of a route that takes a filter, for its OpenAPI responses.
BAD_FILTER: dict[int | str, dict[str, Any]] = {
    422: {
        "model": BadRequest,
        "description": "a malformed parameter, a label no image has, or an unknown concept",
    }
}
MAX_VALUE_CHARS = 500


@dataclass(frozen=True)
class Filter:
    labels: tuple[str, ...] = ()
    concepts: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.labels or self.concepts)


def filter_query(
    label: Annotated[
        list[str] | None,
        Query(
            description="only images in this folder (its label as /api/labels gives it; an"
            " empty value: images at the top of the collection); repeat for several folders",
        ),
    ] = None,
    concept: Annotated[
        list[str] | None,
        Query(
            description="only images the classifier puts at least"
            f" {STEER_FLOOR} of its probability on for these words (as `q` reads them);"
            " repeat for alternatives",
        ),
    ] = None,
) -> Filter:
    for name, values in (("label", label), ("concept", concept)):
        if values and len(values) > MAX_VALUES:
            raise BadFilter(f"{name}: at most {MAX_VALUES} values")
        if values and any(len(v) > MAX_VALUE_CHARS for v in values):
            raise BadFilter(f"{name}: a value longer than {MAX_VALUE_CHARS} characters")
    return Filter(tuple(dict.fromkeys(label or ())), tuple(dict.fromkeys(concept or ())))


FilterDep = Annotated[Filter, Depends(filter_query)]


def label_rows(live: Live) -> dict[str, np.ndarray]:
    """Folder label ("" for none) -> its images' rows, sorted; made once per snapshot."""

    def make() -> dict[str, np.ndarray]:
        labels = np.array([r.label or "" for r in live.snapshot.rows], dtype=object)
        names, codes = np.unique(labels.astype(str), return_inverse=True)
        order = np.argsort(codes, kind="stable")
        splits = np.searchsorted(codes[order], np.arange(1, len(names)))
        return {str(n): part for n, part in zip(names, np.split(order, splits), strict=True)}

    return live.derived.get("label-rows", make)


def concept_rows(live: Live, text: str) -> np.ndarray:
    """Rows of the images with mass at least STEER_FLOOR on the words of `text`."""
    words = words_of(live)
    reading = read_query(words.vocabulary, text)
    if reading.unknown:
        hint = f"; close words: {', '.join(reading.suggestions)}" if reading.suggestions else ""
        raise BadFilter(f"concept {text[:80]!r}: no such word in the vocabulary{hint}")

    def make() -> np.ndarray:
        hits = np.zeros(live.snapshot.count, dtype=bool)
        for word in reading.words:
            mass, _ = words.index.mass(words.vocabulary.classes(word))
            hits |= mass >= STEER_FLOOR
        return np.flatnonzero(hits)

    return live.derived.get(("concept-rows", reading.words), make)


def rows_within(live: Live, filt: Filter) -> np.ndarray | None:
    """The rows `filt` lets through, sorted; None when it filters nothing.

    BadFilter for a label no image has or a concept outside the vocabulary: a
    typo must not look like an empty folder.
    """
    if not filt:
        return None
    keep: np.ndarray | None = None
    if filt.labels:
        index = label_rows(live)
        missing = [name for name in filt.labels if name not in index]
        if missing:
            close = difflib.get_close_matches(missing[0], list(index), n=3)
            hint = f"; close labels: {', '.join(close)}" if close else ""
            raise BadFilter(f"no image has label {missing[0][:80]!r}{hint}")
        keep = np.unique(np.concatenate([index[name] for name in filt.labels]))
    if filt.concepts:
        found = np.unique(np.concatenate([concept_rows(live, c) for c in filt.concepts]))
        keep = found if keep is None else np.intersect1d(keep, found, assume_unique=True)
    assert keep is not None
    return keep.astype(np.int64)
