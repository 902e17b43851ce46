"""Duplicates: exact copies (one content hash) and near-duplicates (re-encoded,
resized, slightly cropped or recoloured copies) grouped from the k-NN lists, each
group with a keeper. Pure functions over arrays; no I/O.

Two images are near-duplicates when their embeddings' cosine similarity is at
least a threshold. DEFAULT_MIN_SIMILARITY comes from bench/duplicates.py: on the
600 photos with 100 of them copied five ways (JPEG quality 30, half size, 90%
crop, a small colour shift, an exact copy), the lowest similarity of a planted copy
to its original and the highest between two *different* photos (the most similar
pairs of the collection, dog breeds and the like) leave a gap, and the default sits
in it (the figures are in bench/README.md).

Groups are the connected parts of the graph whose edges are near-duplicate pairs
and same-hash pairs (single linkage): a chain of copies of copies stays one group.
Each member reports its own similarity to the keeper, so a weak link shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

DEFAULT_MIN_SIMILARITY = 0.9
# Below this, "duplicates" are merely similar images for any embedding we ship:
# the route refuses lower thresholds rather than answer with one giant group.
LOWEST_MIN_SIMILARITY = 0.5


@dataclass(frozen=True)
class Group:
    rows: np.ndarray  # snapshot rows, the keeper first, then by similarity to it
    keeper_similarity: np.ndarray  # each row's cosine to the keeper (1 for itself)
    exact: np.ndarray  # bool: the row has the keeper's content hash
    reason: str  # why the keeper was chosen, in words

    @property
    def kind(self) -> str:
        return "exact" if bool(self.exact.all()) else "near"


def _hash_codes(sha256: Sequence[str]) -> np.ndarray:
    """One integer per distinct content hash."""
    _, codes = np.unique(np.asarray(sha256, dtype=object).astype(str), return_inverse=True)
    return codes.reshape(-1)


def components(
    knn_sims: np.ndarray, knn_ids: np.ndarray, sha256: Sequence[str], min_similarity: float
) -> list[np.ndarray]:
    """Rows grouped as duplicates: each group (2 rows or more) as a sorted array.

    `knn_sims`, `knn_ids`: each row's nearest other rows (-1 padded), as in
    knn.npz. Same-hash rows are joined whether or not the k-NN lists hold them.
    """
    n = len(sha256)
    if n == 0:
        return []
    codes = _hash_codes(sha256)
    near = (knn_ids >= 0) & (knn_sims >= min_similarity)
    src = np.repeat(np.arange(n), near.sum(axis=1))
    dst = knn_ids[near]
    # Same hash: link each row to the first row of its hash.
    first = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
    first[codes[::-1]] = np.arange(n)[::-1]
    twin = first[codes]
    same = twin != np.arange(n)
    src = np.concatenate([src, np.flatnonzero(same)])
    dst = np.concatenate([dst, twin[same]])
    graph = sp.coo_array((np.ones(len(src), np.int8), (src, dst)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels, minlength=count)
    in_group = sizes[labels] > 1
    rows = np.flatnonzero(in_group)
    order = np.argsort(labels[rows], kind="stable")
    rows = rows[order]
    splits = np.flatnonzero(np.diff(labels[rows])) + 1
    return [part for part in np.split(rows, splits) if len(part)]


def choose_keeper(
    rows: np.ndarray, pixels: np.ndarray, sizes: np.ndarray, codes: np.ndarray
) -> tuple[int, str]:
    """(position in `rows` of the keeper, why): the most pixels, then the largest
    file, then the first row (the lowest id)."""
    px, size = pixels[rows], sizes[rows]
    best = int(np.lexsort((np.arange(len(rows)), -size, -px))[0])
    others = np.delete(np.arange(len(rows)), best)
    if len(set(codes[rows].tolist())) == 1:
        return best, "identical files: the first by id is kept"
    if px[best] > px[others].max():
        return best, f"the most pixels: {px[best]:,} (the others at most {px[others].max():,})"
    tied = others[px[others] == px[best]]
    if size[best] > size[tied].max():
        return best, (
            f"the most pixels ({px[best]:,}, tied), then the largest file ({size[best]:,} bytes)"
        )
    return best, "the most pixels and bytes, tied with another: the first by id is kept"


def find_groups(
    knn_sims: np.ndarray,
    knn_ids: np.ndarray,
    vectors: np.ndarray,
    sha256: Sequence[str],
    pixels: np.ndarray,
    sizes: np.ndarray,
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
) -> list[Group]:
    """Every duplicate group, largest first (then by their lowest row)."""
    codes = _hash_codes(sha256)
    groups = []
    for rows in components(knn_sims, knn_ids, sha256, min_similarity):
        best, reason = choose_keeper(rows, pixels, sizes, codes)
        keeper = rows[best]
        sims = np.asarray(vectors[rows], np.float32) @ np.asarray(vectors[keeper], np.float32)
        sims[best] = 1.0
        exact = codes[rows] == codes[keeper]
        sims[exact] = 1.0
        order = np.lexsort((rows, -sims, np.arange(len(rows)) != best))
        groups.append(Group(rows[order], np.clip(sims[order], -1.0, 1.0), exact[order], reason))
    groups.sort(key=lambda g: (-len(g.rows), int(g.rows.min())))
    return groups
