"""Building the FAISS index: the one place that chooses, trains and tunes it. No I/O.

Up to `EXACT_LIMIT` vectors the index is exact inner product ("Flat": cosine on unit
vectors). Above it, an inverted file whose lists hold 4-bit product-quantiser codes
of the residuals, one sub-quantiser per 4 dimensions, scanned with FAISS's SIMD
"fast-scan" kernels ("IVF{nlist},PQ{D/4}x4fsr": D/8 bytes a vector, 160 for
1280-d, 175 MB for 1M), trained on a seeded sample. Its scores only pick
candidates, re-ranked exactly at search time (indexer/neighbours.py).

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

from .neighbours import RERANK, as_f32, drop_self, exact_knn, knn_rows, recall

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
        index.add(as_f32(vectors[start : start + _ADD_CHUNK]))
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
        index.add(as_f32(vectors[start : start + _ADD_CHUNK]))
    count = len(vectors)
    rows = np.random.default_rng(seed).permutation(count)[: min(RECALL_QUERIES // 2, count // 2)]
    k = min(RECALL_K, count - 1)
    _, truth = exact_knn(vectors, vectors[rows], k + 1)
    _, truth = drop_self(np.zeros(truth.shape, np.float32), truth, rows, k)
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
            flat.add(as_f32(vectors[start : start + _ADD_CHUNK]))
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
    query_rows, truth, train_rows = _held_out_set(vectors, seed)
    truth_s = time.monotonic() - started
    tune, check = slice(0, None, 2), slice(1, None, 2)
    index, tried, tune_recall = _tune(
        vectors, as_f32(vectors[train_rows]), seed, query_rows[tune], truth[tune], recall_target
    )
    ivf = faiss.extract_index_ivf(index)
    held_out = _held_out_recall(index, vectors, query_rows[check], truth[check])
    entry.update(
        type=tried[-1],
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


def _held_out_set(vectors: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query rows, their exact 10 nearest other rows, training rows): seeded and
    disjoint, so no recall figure is measured on a training point."""
    count = len(vectors)
    order = np.random.default_rng(seed).permutation(count)
    n_queries = min(RECALL_QUERIES, count // 2)  # nlist_for leaves the rest to train on
    query_rows, rest = order[:n_queries], order[n_queries:]
    train_rows = np.sort(rest[: TRAIN_PER_LIST * nlist_for(count)])
    k = min(RECALL_K, count - 1)
    _, truth = exact_knn(vectors, vectors[query_rows], k + 1)
    _, truth = drop_self(np.zeros(truth.shape, np.float32), truth, query_rows, k)
    return query_rows, truth, train_rows


def _tune(
    vectors: np.ndarray,
    train: np.ndarray,
    seed: int,
    query_rows: np.ndarray,
    truth: np.ndarray,
    recall_target: float,
) -> tuple[faiss.Index, list[str], float]:
    """The coarsest code of `approximate_types` whose smallest sufficient nprobe
    meets the target on the tuning queries (the finest, at full probing, if none
    does): (index with that nprobe set, the types tried, its tuning recall)."""
    count, dim = vectors.shape
    tried: list[str] = []
    centroids = None
    tune_recall = 0.0
    for kind in approximate_types(count, dim):
        tried.append(kind)
        index = _train_and_add(kind, vectors, train, seed, centroids)
        ivf = faiss.extract_index_ivf(index)
        centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
        for nprobe in _nprobe_ladder(ivf.nlist):  # the smallest that meets the target
            ivf.nprobe = nprobe
            tune_recall = _held_out_recall(index, vectors, query_rows, truth)
            if tune_recall >= recall_target + TUNING_MARGIN:
                break
        if tune_recall >= recall_target + TUNING_MARGIN:
            break
    return index, tried, tune_recall


def build_index(
    vectors: np.ndarray, *, seed: int = 0, exact_limit: int = EXACT_LIMIT
) -> faiss.Index:
    """An index whose ids are row numbers, i.e. catalog rows (see build_with_manifest)."""
    return build_with_manifest(vectors, seed=seed, exact_limit=exact_limit)[0]


def to_bytes(index: faiss.Index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def from_bytes(data: bytes) -> faiss.Index:
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
