"""FAISS index: the one place that chooses the index type. No I/O here.

Up to `EXACT_LIMIT` vectors the index is exact inner product ("Flat": cosine on unit
vectors). Above it, an inverted file whose lists hold 4-bit product-quantiser codes
of the residuals, one sub-quantiser per 4 dimensions, scanned with FAISS's SIMD
"fast-scan" kernels ("IVF{nlist},PQ{D/4}x4fsr": D/8 bytes a vector, 160 for
1280-d, 175 MB for 1M), trained on a seeded sample. Its scores only pick
candidates: every search takes `RERANK` x k of them and re-ranks them exactly
against the float32 vectors (the snapshot's memory-mapped vectors.npy), so the
scores callers see are exact dot products and only the candidate set is
approximate.

The build measures what it built: nprobe (which FAISS serialises with the index)
is the smallest that reaches `RECALL_TARGET` recall@10 on held-out queries, and the
recall recorded in the manifest entry comes from a second, disjoint set of them.
Where no nprobe does, the codes are too coarse for the data and the build moves on
to finer ones (`approximate_types`).
"""

from __future__ import annotations

import math
import time
from typing import Any

import faiss
import numpy as np

# Exact search scans every vector for every query, ~0.4 us a 1280-d vector on one
# core of the build machine: 8 ms at 20k, 38 ms at 100k, 357 ms at 1M. The IVF
# index answers in 0.3 ms at 20k and 100k, 3.5 ms at 1M (bench/large_index.py).
EXACT_LIMIT = 20_000
MIN_APPROXIMATE = 1_000
RECALL_TARGET = 0.95
RECALL_K = 10
# Held-out queries for the build-time recall: half choose nprobe, the other half
# measure the recall recorded in the manifest (so it is not the tuning figure).
RECALL_QUERIES = 500
# nprobe must reach the target plus this on the tuning half, so that the other
# half (two standard errors of ~0.005 away at 250 queries) also meets it.
TUNING_MARGIN = 0.01
# Candidates per result re-ranked exactly. The 4-bit codes rank coarsely: at 1M
# x 1280, nprobe 32, recall@10 was 0.81 re-ranking 2k candidates, 0.95 at 10k and
# 0.956 (all that the probed lists hold) at 20k. 8-bit scalar codes rank well enough
# at 2k but scan 5x slower (10 ms a query at 1M against 2 ms) in 7x the memory.
RERANK = 10
# The default model's feature size (EfficientNet-Lite0), for callers that name none.
DEFAULT_DIM = 1280
# Training points per inverted list: FAISS's k-means wants at least 39.
TRAIN_PER_LIST = 50
MIN_TRAIN_PER_LIST = 39
# The flags to read an index.faiss with. IO_FLAG_MMAP_IFC maps a Flat index's
# vectors (and an IVF index's array inverted lists) straight from the file rather
# than copying them to the heap: shared, evictable page cache. The fast-scan
# lists are block-interleaved and read into memory, which is their (small) size.
READ_FLAGS = faiss.IO_FLAG_MMAP_IFC

# Rows added per call while building, so a memory-mapped input is never copied whole.
_ADD_CHUNK = 65_536
# Floats gathered at once when re-ranking (32 MB): bounds the (queries, candidates,
# D) block whatever k is.
_RERANK_FLOATS = 1 << 23
# What FAISS itself returns for a missing result (-FLT_MAX): callers see one sentinel.
_MISSING = np.float32(np.finfo(np.float32).min)


def nlist_for(count: int, held_out: int = RECALL_QUERIES) -> int:
    """Inverted lists for `count` vectors: the power of two nearest 2 * sqrt(count).

    Capped so the training sample (which excludes the held-out queries) gives each
    list the 39 points FAISS's k-means asks for.
    """
    target = 2 ** round(math.log2(max(2.0, 2 * math.sqrt(count))))
    trainable = max(count - min(held_out, count // 2), 1) // MIN_TRAIN_PER_LIST
    cap = 2 ** int(math.log2(trainable)) if trainable >= 1 else 1
    return max(1, min(target, cap))


def approximate_types(count: int, dim: int = DEFAULT_DIM) -> list[str]:
    """IVF indexes for `count` vectors, coarsest (smallest, fastest) codes first.

    4-bit PQ over 4 dimensions a code is the choice; 2 dimensions (twice the
    memory) and 8-bit scalar codes (D bytes, 5x slower scans) are the fallbacks a
    build takes only where its measured recall needs them.
    """
    codes = [f"PQ{dim // sub}x4fsr" for sub in (4, 2) if dim % sub == 0] + ["SQ8"]
    return [f"IVF{nlist_for(count)},{code}" for code in codes]


def choose_index_type(count: int, exact_limit: int = EXACT_LIMIT, *, dim: int = DEFAULT_DIM) -> str:
    """The FAISS factory string for a collection of `count` vectors of `dim`
    (a build moves on to a finer code where its measured recall asks for it)."""
    # Below a few thousand vectors k-means has too few points to train the lists
    # well, and a scan is cheap anyway, whatever limit a caller asks for.
    if count <= max(exact_limit, MIN_APPROXIMATE):
        return "Flat"
    return approximate_types(count, dim)[0]


def is_exact(index: faiss.Index) -> bool:
    """True for an exhaustive index (its own scores are exact)."""
    return faiss.try_extract_index_ivf(index) is None


def _as_f32(rows: np.ndarray) -> np.ndarray:
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
    q = _as_f32(np.atleast_2d(queries))
    if is_exact(index):
        scores, ids = index.search(q, k)
        return scores, ids
    if vectors is None:
        raise ValueError("an approximate index re-ranks against the vectors: pass them")
    _, candidates = index.search(q, k * RERANK)
    return _rerank(q, candidates, vectors, k)


def _drop_self(
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
        s, i = _drop_self(s, i, part, k_eff)
        sims[start : start + len(part), :k_eff] = np.where(i >= 0, s, -np.inf)
        ids[start : start + len(part), :k_eff] = i
    return sims, ids


def knn_self(index: faiss.Index, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each indexed vector's k nearest *other* vectors: (sims, ids), each (N, k).

    The one all-pairs pass of a build: the layouts and the path graph share it.
    Rows are padded with id -1 / sim -inf when fewer than k others exist.
    """
    return knn_rows(index, vectors, np.arange(len(vectors)), k)


def exact_knn(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top k of `queries` over all of `vectors` by brute force, a block of
    rows at a time (a memory-mapped `vectors` is never loaded whole)."""
    q = _as_f32(np.atleast_2d(queries))
    k = max(1, min(k, len(vectors)))
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.full((len(q), k), -1, dtype=np.int64)
    for start in range(0, len(vectors), _ADD_CHUNK):
        block = _as_f32(vectors[start : start + _ADD_CHUNK])
        s = np.concatenate([best_s, q @ block.T], axis=1)
        i = np.concatenate(
            [best_i, np.broadcast_to(np.arange(start, start + len(block)), (len(q), len(block)))],
            axis=1,
        )
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


def _nprobe_ladder(nlist: int) -> list[int]:
    """1, 2, 3, 4, 6, 8, 12, ... up to nlist: steps of ~1.5x, so the chosen nprobe
    overshoots the target less than doubling would (query time grows with it)."""
    steps = {min(m << e, nlist) for e in range(nlist.bit_length()) for m in (2, 3)}
    return sorted(steps | {1})


def _held_out_recall(
    index: faiss.Index, vectors: np.ndarray, rows: np.ndarray, truth: np.ndarray
) -> float:
    _, ids = knn_rows(index, vectors, rows, truth.shape[1])
    return recall(ids, truth)


def _train_and_add(
    kind: str, vectors: np.ndarray, train: np.ndarray, seed: int, centroids: np.ndarray | None
) -> faiss.Index:
    """A trained, filled index of `kind`; its coarse k-means is reused if given."""
    index = faiss.index_factory(vectors.shape[1], kind, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.seed = seed  # k-means initialisation
    if centroids is not None:  # then train() fits only the codes
        ivf.quantizer.add(centroids)
    index.train(train)
    for start in range(0, len(vectors), _ADD_CHUNK):
        index.add(_as_f32(vectors[start : start + _ADD_CHUNK]))
    return index


def _refill(
    trained: faiss.Index, vectors: np.ndarray, seed: int, recall_target: float
) -> tuple[faiss.Index, dict[str, Any]] | None:
    """`trained` (an approximate index of an earlier snapshot) emptied and filled
    with `vectors`, if it still meets the recall target on fresh held-out rows:
    an update then skips the k-means and the nprobe search. None if it does not."""
    started = time.monotonic()
    # A copy through bytes, not clone_index: a memory-mapped index's lists are
    # views FAISS may not resize.
    index = faiss.deserialize_index(faiss.serialize_index(trained))
    index.reset()
    for start in range(0, len(vectors), _ADD_CHUNK):
        index.add(_as_f32(vectors[start : start + _ADD_CHUNK]))
    count = len(vectors)
    rows = np.random.default_rng(seed).permutation(count)[: min(RECALL_QUERIES // 2, count // 2)]
    k = min(RECALL_K, count - 1)
    _, truth = exact_knn(vectors, vectors[rows], k + 1)
    _, truth = _drop_self(np.zeros(truth.shape, np.float32), truth, rows, k)
    held_out = _held_out_recall(index, vectors, rows, truth)
    if held_out < recall_target:
        return None
    ivf = faiss.extract_index_ivf(index)
    return index, {
        "exact": False,
        "nlist": int(ivf.nlist),
        "nprobe": int(ivf.nprobe),
        "rerank": RERANK,
        "recall_at_10": round(held_out, 4),
        "recall_target": recall_target,
        "recall_queries": int(len(rows)),
        "training": "reused from the previous snapshot",
        "seed": seed,
        "approx_bytes": int(count * (ivf.code_size + 8) + ivf.nlist * vectors.shape[1] * 4),
        "seconds": round(time.monotonic() - started, 3),
    }


def build_with_manifest(
    vectors: np.ndarray,
    *,
    seed: int = 0,
    exact_limit: int = EXACT_LIMIT,
    recall_target: float = RECALL_TARGET,
    trained: tuple[faiss.Index, dict[str, Any]] | None = None,
) -> tuple[faiss.Index, dict[str, Any]]:
    """An index whose ids are row numbers (catalog rows), and its manifest entry.

    Approximate indexes are trained on a seeded sample of rows. The held-out
    queries are other rows of the collection (never training points), asked for
    their 10 nearest *other* vectors, against brute force over all rows. nprobe
    grows until the tuning half meets the target; where even probing every list
    does not (the codes rank too coarsely for this data), the next finer code of
    `approximate_types` is tried on the same coarse centroids. `trained`: the
    previous snapshot's index and entry, reused when its type still fits (_refill).
    """
    started = time.monotonic()
    count, dim = vectors.shape
    kind = choose_index_type(count, exact_limit, dim=dim)
    entry: dict[str, Any] = {"type": kind, "metric": "inner_product", "exact_limit": exact_limit}
    if kind == "Flat":
        flat = faiss.IndexFlatIP(dim)
        for start in range(0, count, _ADD_CHUNK):
            flat.add(_as_f32(vectors[start : start + _ADD_CHUNK]))
        entry.update(exact=True, seconds=round(time.monotonic() - started, 3))
        return flat, entry

    if trained is not None and trained[0].d == dim:
        was = trained[1].get("type")
        refilled = (
            _refill(trained[0], vectors, seed, recall_target)
            if was in approximate_types(count, dim)
            else None
        )
        if refilled is not None:
            index, reused = refilled
            entry.update(reused, type=was, tried=[was])
            return index, entry
    rng = np.random.default_rng(seed)
    order = rng.permutation(count)
    n_queries = min(RECALL_QUERIES, count // 2)  # nlist_for leaves the rest to train on
    query_rows, rest = order[:n_queries], order[n_queries:]
    train_rows = np.sort(rest[: TRAIN_PER_LIST * nlist_for(count)])
    train = _as_f32(vectors[train_rows])
    k = min(RECALL_K, count - 1)
    _, truth = exact_knn(vectors, vectors[query_rows], k + 1)
    _, truth = _drop_self(np.zeros(truth.shape, np.float32), truth, query_rows, k)
    tune, check = slice(0, None, 2), slice(1, None, 2)
    truth_s = time.monotonic() - started

    tried: list[str] = []
    centroids = None
    for kind in approximate_types(count, dim):
        tried.append(kind)
        index = _train_and_add(kind, vectors, train, seed, centroids)
        ivf = faiss.extract_index_ivf(index)
        centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
        for nprobe in _nprobe_ladder(ivf.nlist):  # the smallest that meets the target
            ivf.nprobe = nprobe
            tune_recall = _held_out_recall(index, vectors, query_rows[tune], truth[tune])
            if tune_recall >= recall_target + TUNING_MARGIN:
                break
        if tune_recall >= recall_target + TUNING_MARGIN:
            break
    held_out = _held_out_recall(index, vectors, query_rows[check], truth[check])
    entry.update(
        type=kind,
        tried=tried,
        exact=False,
        nlist=int(ivf.nlist),
        nprobe=int(ivf.nprobe),
        rerank=RERANK,
        recall_at_10=round(held_out, 4),
        recall_at_10_tuning=round(tune_recall, 4),
        recall_target=recall_target,
        recall_queries=int(len(query_rows[check])),
        tuning_queries=int(len(query_rows[tune])),
        train_sample=int(len(train_rows)),
        seed=seed,
        # Codes and ids in the inverted lists plus the coarse centroids (about).
        approx_bytes=int(count * (ivf.code_size + 8) + ivf.nlist * dim * 4),
        exact_knn_seconds=round(truth_s, 3),
        seconds=round(time.monotonic() - started, 3),
    )
    return index, entry


def build_index(
    vectors: np.ndarray, *, seed: int = 0, exact_limit: int = EXACT_LIMIT
) -> faiss.Index:
    """An index whose ids are row numbers, i.e. catalog rows (see build_with_manifest)."""
    return build_with_manifest(vectors, seed=seed, exact_limit=exact_limit)[0]


def to_bytes(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def from_bytes(data: bytes) -> faiss.Index:
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
