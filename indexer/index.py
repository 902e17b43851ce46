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
