"""FAISS index: the one place that chooses the index type. No I/O here."""

from __future__ import annotations

import faiss
import numpy as np

# Exact inner-product search (cosine on unit vectors) answers a query over 100k
# 1280-d vectors in tens of milliseconds; approximate indexes slot in here later.
EXACT_LIMIT = 200_000


def choose_index_type(count: int) -> str:
    if count <= EXACT_LIMIT:
        return "Flat"
    raise NotImplementedError(f"{count:,} images: approximate indexes are not built yet")


def build_index(vectors: np.ndarray) -> faiss.Index:
    """An index whose ids are row numbers, i.e. catalog ids."""
    count, dim = vectors.shape
    kind = choose_index_type(count)
    index = faiss.index_factory(dim, kind, faiss.METRIC_INNER_PRODUCT)
    if count:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (Q, k'); k' = min(k, ntotal); ids are -1 where short."""
    k = max(1, min(k, index.ntotal))
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    scores, ids = index.search(q, k)
    return scores, ids


def to_bytes(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def from_bytes(data: bytes) -> faiss.Index:
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def knn_self(index: faiss.Index, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each indexed vector's k nearest *other* vectors: (sims, ids), each (N, k).

    The one all-pairs pass of a build: the layouts and the path graph share it.
    Rows are padded with id -1 / sim -inf when fewer than k others exist.
    """
    n = len(vectors)
    k_eff = min(k, max(n - 1, 0))
    sims = np.full((n, k), -np.inf, dtype=np.float32)
    ids = np.full((n, k), -1, dtype=np.int64)
    if k_eff == 0:
        return sims, ids
    for start in range(0, n, 4096):  # bounded memory for large N
        chunk = np.ascontiguousarray(vectors[start : start + 4096], dtype=np.float32)
        s, i = index.search(chunk, k_eff + 1)
        rows = np.arange(start, start + len(chunk))[:, None]
        # Drop the row itself wherever it landed (duplicates can tie with it);
        # where it is absent, drop the last neighbour instead.
        is_self = i == rows
        drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k_eff)
        keep = np.ones_like(i, dtype=bool)
        keep[np.arange(len(chunk)), drop] = False
        sims[start : start + len(chunk), :k_eff] = s[keep].reshape(len(chunk), k_eff)
        ids[start : start + len(chunk), :k_eff] = i[keep].reshape(len(chunk), k_eff)
    return sims, ids
