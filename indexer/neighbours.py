"""Asking a FAISS index: search with exact re-ranking, the k nearest other rows
of indexed vectors, brute force, recall. No I/O here; the index itself is built
and tuned in indexer/index.py.

An approximate index's scores only pick candidates: every search takes `RERANK` x
k of them and re-ranks them exactly against the float32 vectors (the snapshot's
memory-mapped vectors.npy), so the scores callers see are exact dot products and
only the candidate set is approximate.
"""

from __future__ import annotations

import faiss
import numpy as np

# Candidates per result re-ranked exactly. The 4-bit codes rank coarsely: at 1M
# x 1280, nprobe 32, recall@10 was 0.81 re-ranking 2k candidates, 0.95 at 10k and
# 0.956 (all that the probed lists hold) at 20k. 8-bit scalar codes rank well enough
# at 2k but scan 5x slower (10 ms a query at 1M against 2 ms) in 7x the memory.
RERANK = 10
# Floats gathered at once when re-ranking (32 MB): bounds the (queries, candidates,
# D) block whatever k is.
_RERANK_FLOATS = 1 << 23
# What FAISS itself returns for a missing result (-FLT_MAX): callers see one sentinel.
_MISSING = np.float32(np.finfo(np.float32).min)
# Rows of `vectors` scored at once by brute force (exact_knn).
_BLOCK = 65_536
# Rows gathered at once when brute force covers only some rows (42 MB at 1280-d).
_GATHER_BLOCK = 8_192


def is_exact(index: faiss.Index) -> bool:
    """True for an exhaustive index (its own scores are exact)."""
    return faiss.try_extract_index_ivf(index) is None


def as_f32(rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rows, dtype=np.float32)


def _gather(vectors: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """vectors[ids] as float32, reading each distinct row once and in file order
    (cheaper on a memory-mapped file than random order)."""
    uniq, inverse = np.unique(ids, return_inverse=True)
    return np.asarray(vectors[uniq], dtype=np.float32)[inverse.reshape(ids.shape)]


def _rerank(
    queries: np.ndarray, candidates: np.ndarray, vectors: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The top k of each query's candidates by exact inner product with `vectors`."""
    nq, per_query = len(queries), candidates.shape[1] * queries.shape[1]
    step = max(1, _RERANK_FLOATS // max(per_query, 1))
    scores = np.full((nq, k), _MISSING, dtype=np.float32)
    ids = np.full((nq, k), -1, dtype=np.int64)
    for start in range(0, nq, step):
        cand = candidates[start : start + step]
        valid = cand >= 0
        rows = _gather(vectors, np.where(valid, cand, 0))  # (B, C, D)
        exact = np.matmul(rows, queries[start : start + len(cand), :, None])[..., 0]
        exact = np.where(valid, exact, -np.inf)
        # Stable: equal scores keep the candidate order FAISS gave them.
        order = np.argsort(-exact, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(exact, order, axis=1)
        found = np.isfinite(top)
        width = top.shape[1]
        block = slice(start, start + len(cand))
        scores[block, :width] = np.where(found, top, _MISSING)
        ids[block, :width] = np.where(found, np.take_along_axis(cand, order, axis=1), -1)
    return scores, ids


def search(
    index: faiss.Index, queries: np.ndarray, k: int, vectors: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(scores, ids), each (Q, k'); k' = min(k, ntotal); ids are -1 where short.

    An approximate index needs `vectors` (the indexed vectors, e.g. the snapshot's
    memory-mapped array): its candidates are re-ranked exactly against them, so
    scores are always exact inner products.
    """
    k = max(1, min(k, index.ntotal))
    q = as_f32(np.atleast_2d(queries))
    if is_exact(index):
        scores, ids = index.search(q, k)
        return scores, ids
    if vectors is None:
        raise ValueError("an approximate index re-ranks against the vectors: pass them")
    _, candidates = index.search(q, k * RERANK)
    return _rerank(q, candidates, vectors, k)


# A filter of up to this many rows is searched exactly, by brute force over its
# own vectors (1,000 rows of 1280-d: ~1 ms; 20,000 about as long as one exact
# search at 20k); a larger one through the index, told to skip the other rows (a
# FAISS IDSelector), its candidates re-ranked as `search` does.
WITHIN_EXACT = 20_000


def search_within(
    index: faiss.Index, queries: np.ndarray, k: int, vectors: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The k best of `rows` (sorted, unique) only, as `search` gives them: (scores,
    ids), each (Q, min(k, len(rows))), ids -1 where short.

    The k best *within* the rows, not the k best overall then filtered: a filter
    holding 1% of the images still fills its k results.
    """
    q = as_f32(np.atleast_2d(queries))
    k = max(1, min(k, len(rows)))
    if len(rows) == 0:
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    if len(rows) <= WITHIN_EXACT:
        return exact_knn(vectors, q, k, rows)
    selector = faiss.IDSelectorBatch(np.ascontiguousarray(rows, dtype=np.int64))
    if is_exact(index):
        params = faiss.SearchParameters()
        params.sel = selector
        scores, ids = index.search(q, k, params=params)
        return scores, ids
    ivf_params = faiss.SearchParametersIVF()
    ivf_params.sel = selector
    ivf_params.nprobe = faiss.extract_index_ivf(index).nprobe
    _, candidates = index.search(q, k * RERANK, params=ivf_params)
    return _rerank(q, candidates, vectors, k)


def drop_self(
    scores: np.ndarray, ids: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """From (n, k+1) results of searching rows[i]'s own vector, the k best others.

    The row is dropped wherever it landed (duplicates can tie with it); where it
    is absent, the last result is dropped instead.
    """
    is_self = ids == rows[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), ids.shape[1] - 1)
    keep = np.ones_like(ids, dtype=bool)
    keep[np.arange(len(ids)), drop] = False
    return scores[keep].reshape(len(ids), k), ids[keep].reshape(len(ids), k)


def knn_rows(
    index: faiss.Index, vectors: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest *other* indexed vectors of each of `rows`: (sims, ids), each
    (len(rows), k), padded with id -1 / sim -inf where fewer exist. Exact for a
    Flat index; approximate candidates, exactly re-ranked, otherwise."""
    rows = np.asarray(rows, dtype=np.int64)
    n = len(vectors)
    k_eff = min(k, max(n - 1, 0))
    sims = np.full((len(rows), k), -np.inf, dtype=np.float32)
    ids = np.full((len(rows), k), -1, dtype=np.int64)
    if k_eff == 0:
        return sims, ids
    for start in range(0, len(rows), 4096):  # bounded memory for large N
        part = rows[start : start + 4096]
        s, i = search(index, vectors[part], k_eff + 1, vectors)
        # An approximate index can come back short (too few candidates in the
        # probed lists); those rows get an exact search, so that every list is
        # full: openTSNE corrupts memory on a -1 neighbour.
        short = np.flatnonzero((i < 0).any(axis=1))
        if len(short):
            s[short], i[short] = exact_knn(vectors, vectors[part[short]], k_eff + 1)
        s, i = drop_self(s, i, part, k_eff)
        sims[start : start + len(part), :k_eff] = np.where(i >= 0, s, -np.inf)
        ids[start : start + len(part), :k_eff] = i
    return sims, ids


def knn_self(index: faiss.Index, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each indexed vector's k nearest *other* vectors: (sims, ids), each (N, k).

    The one all-pairs pass of a build: the layouts and the path graph share it.
    Rows are padded with id -1 / sim -inf when fewer than k others exist.
    """
    return knn_rows(index, vectors, np.arange(len(vectors)), k)


def exact_knn(
    vectors: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top k of `queries` over all of `vectors` (or over its `rows` only) by
    brute force, a block of rows at a time (a memory-mapped `vectors` is never
    loaded whole); ids are rows of `vectors`."""
    q = as_f32(np.atleast_2d(queries))
    total = len(vectors) if rows is None else len(rows)
    k = max(1, min(k, total))
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(q), k), -1, dtype=np.int64)
    for start in range(0, total, _BLOCK if rows is None else _GATHER_BLOCK):
        if rows is None:
            block = as_f32(vectors[start : start + _BLOCK])
            block_ids = np.arange(start, start + len(block))
        else:
            block_ids = rows[start : start + _GATHER_BLOCK]
            block = _gather(vectors, block_ids)
        s = np.concatenate([best_s, q @ block.T], axis=1)
        i = np.concatenate([best_i, np.broadcast_to(block_ids, (len(q), len(block)))], axis=1)
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, top, axis=1), np.take_along_axis(i, top, axis=1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_s, order, axis=1), np.take_along_axis(best_i, order, axis=1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over queries of |found & truth| / |truth| (ids; -1 never counts)."""
    hits = [
        len(set(f[f >= 0].tolist()) & set(t[t >= 0].tolist())) / max(int((t >= 0).sum()), 1)
        for f, t in zip(found, truth, strict=True)
    ]
    return float(np.mean(hits)) if hits else 1.0
