"""The k-NN graph the paths run on: built from the build's k-NN, joined into one
component. Pure functions over arrays, no I/O; routing is indexer/routing.py.

The graph is an N x N symmetric CSR matrix whose entries are cosine *distances*
(1 - similarity, clipped to >= MIN_DIST so that no edge is an explicit zero). The
edge cost of a route is distance ** p, with p (the "smoothness") chosen per query:
p > 1 makes one big jump cost more than several small steps that cover it.

Exact duplicates (same content hash) are collapsed onto their lowest id, the
"canonical" node: only canonical nodes carry edges, so a chain can never show two
copies of one image; a request for a duplicate is routed from its canonical node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

DEFAULT_K = 10  # by measurement: bench/paths.py --only quality,k
DEFAULT_POWER = 3.0  # by measurement: bench/paths.py --only quality
MIN_POWER, MAX_POWER = 1.0, 8.0
MIN_DIST = 1e-6  # distances are clipped up to this: scipy treats explicit zeros as edges
JOIN_PROBES = 32  # members of a stray component compared with everything to join it
JOIN_FLOPS = 5e11  # brute-force budget per joining round: fewer probes on huge sets
_CHUNK_FLOATS = 1 << 24  # bounds the (probes x candidates) similarity block: 64 MiB


@dataclass(frozen=True)
class GraphInfo:
    k: int
    nodes: int  # distinct contents, i.e. nodes that carry edges
    edges: int  # undirected
    components_before: int  # of the symmetric k-NN graph, before joining
    join_edges: int  # edges added to make it connected


# ---------------------------------------------------------------- building


def canonical_ids(keys: Sequence[str]) -> np.ndarray:
    """For each row, the lowest row id with the same key (content hash)."""
    first: dict[str, int] = {}
    return np.fromiter(
        (first.setdefault(key, i) for i, key in enumerate(keys)), dtype=np.int64, count=len(keys)
    )


def _csr(rows: np.ndarray, cols: np.ndarray, dist: np.ndarray, n: int) -> sp.csr_array:
    m = sp.csr_array(
        (dist.astype(np.float32), (rows.astype(np.int64), cols.astype(np.int64))), shape=(n, n)
    )
    return tidy(m)


def tidy(m: sp.csr_array) -> sp.csr_array:
    m = sp.csr_array(m)
    m.sum_duplicates()
    m.sort_indices()
    m.indices = m.indices.astype(np.int32, copy=False)
    m.indptr = m.indptr.astype(np.int64 if m.nnz >= 2**31 else np.int32, copy=False)
    return m


def _dist(sims: np.ndarray) -> np.ndarray:
    return np.clip(1.0 - sims.astype(np.float32), MIN_DIST, 2.0)


def _valid_neighbours(knn_ids: np.ndarray, canonical: np.ndarray) -> np.ndarray:
    """Mask of k-NN entries that join two distinct canonical nodes."""
    n = len(knn_ids)
    is_canon = canonical == np.arange(n)
    valid = knn_ids >= 0
    valid &= is_canon[np.where(valid, knn_ids, 0)]
    valid &= is_canon[:, None]
    return valid


def knn_graph(
    knn_sims: np.ndarray, knn_ids: np.ndarray, k: int, canonical: np.ndarray
) -> sp.csr_array:
    """Symmetric graph of each canonical node's first k canonical neighbours."""
    n = len(knn_ids)
    valid = _valid_neighbours(knn_ids, canonical)
    keep = valid & (np.cumsum(valid, axis=1) <= k)
    rows = np.broadcast_to(np.arange(n)[:, None], knn_ids.shape)[keep]
    directed = _csr(rows, knn_ids[keep], _dist(knn_sims[keep]), n)
    # Union of both directions: an image that is nobody's neighbour still has its own.
    return tidy(directed.maximum(directed.T))


def _labels(graph: sp.csr_array, nodes: np.ndarray) -> tuple[int, np.ndarray]:
    """(number of components among `nodes`, component label per node of the graph)."""
    _, labels = connected_components(graph, directed=False)
    return len(np.unique(labels[nodes])), labels


def _mst_links(
    labels: np.ndarray, rows: np.ndarray, cols: np.ndarray, dist: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Of candidate edges between components, those of a minimum spanning forest
    of the contracted component graph (Kruskal's choice, via scipy)."""
    lu, lv = labels[rows], labels[cols]
    cross = lu != lv
    rows, cols, dist, lu, lv = rows[cross], cols[cross], dist[cross], lu[cross], lv[cross]
    if not len(rows):
        return rows, cols, dist
    comps, inv = np.unique(np.concatenate([lu, lv]), return_inverse=True)
    cu, cv = inv[: len(lu)], inv[len(lu) :]
    lo, hi = np.minimum(cu, cv), np.maximum(cu, cv)
    # Keep the shortest candidate per component pair.
    order = np.lexsort((dist, hi, lo))
    pair = lo[order] * len(comps) + hi[order]
    first = order[np.r_[True, pair[1:] != pair[:-1]]]
    contracted = sp.csr_array(
        (dist[first].astype(np.float64) + MIN_DIST, (lo[first], hi[first])),
        shape=(len(comps), len(comps)),
    )
    tree = minimum_spanning_tree(contracted).tocoo()
    lookup = {(int(a), int(b)): int(e) for a, b, e in zip(lo[first], hi[first], first, strict=True)}
    chosen = np.array(
        [lookup[(min(a, b), max(a, b))] for a, b in zip(tree.row, tree.col, strict=True)],
        dtype=np.int64,
    )
    return rows[chosen], cols[chosen], dist[chosen]


def _boruvka_round(
    vectors: np.ndarray, labels: np.ndarray, nodes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each component but the largest finds its nearest outside node, by brute force
    over up to JOIN_PROBES of its members (fewer past JOIN_FLOPS: then the link is
    near-shortest, not shortest). Each round at least halves the count."""
    lab = labels[nodes]
    comps, inv, sizes = np.unique(lab, return_inverse=True, return_counts=True)
    big = int(np.argmax(sizes))
    budget = JOIN_FLOPS / max(1.0, 2.0 * len(comps) * len(nodes) * vectors.shape[1])
    per = int(np.clip(budget, 1, JOIN_PROBES))
    # Up to `per` members of each stray component, spread over it.
    by_comp = nodes[np.argsort(inv, kind="stable")]
    starts = np.cumsum(sizes) - sizes
    stray = np.flatnonzero(np.arange(len(comps)) != big)
    take = np.minimum(sizes[stray], per)
    comp = np.repeat(stray, take)
    j = np.arange(int(take.sum())) - np.repeat(np.cumsum(take) - take, take)
    step = (sizes[comp] - 1) / np.maximum(np.repeat(take, take) - 1, 1)
    probes = by_comp[starts[comp] + (j * step).astype(np.int64)]
    q = np.asarray(vectors[probes], dtype=np.float32)
    qlab = labels[probes]
    best_sim = np.full(len(probes), -np.inf, dtype=np.float32)
    best_id = np.full(len(probes), -1, dtype=np.int64)
    step = max(1, _CHUNK_FLOATS // max(len(probes), 1))
    for start in range(0, len(nodes), step):
        cand = nodes[start : start + step]
        s = q @ np.asarray(vectors[cand], dtype=np.float32).T
        s[qlab[:, None] == labels[cand][None, :]] = -np.inf
        j = np.argmax(s, axis=1)
        sj = s[np.arange(len(probes)), j]
        better = sj > best_sim
        best_sim[better], best_id[better] = sj[better], cand[j[better]]
    # The best probe of each component.
    order = np.lexsort((-best_sim, qlab))
    first = order[np.r_[True, qlab[order][1:] != qlab[order][:-1]]]
    return probes[first], best_id[first], _dist(best_sim[first])


def build_graph(
    vectors: np.ndarray,
    knn_sims: np.ndarray,
    knn_ids: np.ndarray,
    *,
    k: int = DEFAULT_K,
    canonical: np.ndarray | None = None,
    hints: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> tuple[sp.csr_array, GraphInfo]:
    """The connected, symmetric k-NN graph of `vectors` (unit rows) from their
    precomputed neighbour lists (N x K, K >= k, self excluded, -1 padded).

    Components are joined first with the cheapest links the full K-wide lists
    and the `hints` (rows, cols, distances: e.g. the previous snapshot's edges
    between images still here, which hold its joining links) offer, by a minimum
    spanning tree over components; then, for any left, by Boruvka rounds of
    brute-force nearest-outside-node search.
    """
    n = len(vectors)
    if not 1 <= k <= knn_ids.shape[1]:
        raise ValueError(f"graph k must be in 1..{knn_ids.shape[1]}, got {k}")
    canonical = np.arange(n) if canonical is None else np.asarray(canonical, dtype=np.int64)
    graph = knn_graph(knn_sims, knn_ids, k, canonical)
    nodes = np.flatnonzero(canonical == np.arange(n))
    count, labels = _labels(graph, nodes) if n else (0, np.zeros(0, np.int64))
    before, joined = count, 0
    if count > 1:
        valid = _valid_neighbours(knn_ids, canonical)
        rows = np.broadcast_to(np.arange(n)[:, None], knn_ids.shape)[valid]
        cols, dist = knn_ids[valid], _dist(knn_sims[valid])
        if hints is not None:
            hr, hc, hd = (np.asarray(a) for a in hints)
            ok = (hr != hc) & (canonical[hr] == hr) & (canonical[hc] == hc)
            rows, cols = np.r_[rows, hr[ok]], np.r_[cols, hc[ok]]
            dist = np.r_[dist, np.clip(hd[ok].astype(np.float32), MIN_DIST, 2.0)]
        r, c, d = _mst_links(labels, rows, cols, dist)
        while count > 1:
            if not len(r):
                r, c, d = _boruvka_round(vectors, labels, nodes)
            rr, cc, dd = np.r_[r, c], np.r_[c, r], np.r_[d, d]
            _, once = np.unique(rr * n + cc, return_index=True)  # a pair may come twice
            joined += len(once) // 2
            links = _csr(rr[once], cc[once], dd[once], n)
            graph = tidy(graph.maximum(links))
            count, labels = _labels(graph, nodes)
            r = c = d = np.zeros(0)
    info = GraphInfo(
        k=k, nodes=len(nodes), edges=graph.nnz // 2, components_before=before, join_edges=joined
    )
    return graph, info
