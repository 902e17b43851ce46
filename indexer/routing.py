"""Shortest paths through the k-NN graph (indexer.graph): pure functions, no I/O.

A route's cost is the sum of distance ** p over its edges, p (the smoothness)
chosen per query; uploads join the graph for one request as Attachments. The
PathFinder keeps the weight arrays of the powers in use and is thread-safe.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from .graph import DEFAULT_POWER, MIN_DIST, tidy


class NoPath(Exception):
    """No route satisfies the request (cut off by `avoid`, a similarity floor, or
    the nodes of earlier legs). `leg` is the index of the leg that failed."""

    def __init__(self, message: str, leg: int = 0) -> None:
        super().__init__(message)
        self.leg = leg


@dataclass(frozen=True)
class Attachment:
    """An uploaded image joined to the graph for one request: it becomes node
    N + i, linked both ways to catalog nodes `ids` at cosine distances `dist`."""

    ids: np.ndarray
    dist: np.ndarray


@dataclass(frozen=True)
class Route:
    chain: list[int]  # node ids; ids >= N are attachments
    stops: list[int]  # positions in `chain` of the source, the waypoints and the target
    cost: float  # sum of distance ** power over its edges


def _ranges(indptr: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(edge positions, owning node) of every edge out of `nodes`, vectorised."""
    starts = indptr[nodes].astype(np.int64)
    lens = indptr[nodes + 1].astype(np.int64) - starts
    owner = np.repeat(nodes, lens)
    offsets = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
    return np.repeat(starts, lens) + offsets, owner


def _edges_touching(indptr: np.ndarray, indices: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """Positions of every edge out of or into `nodes` of a symmetric CSR graph."""
    out, owner = _ranges(indptr, nodes)
    nbrs = indices[out].astype(np.int64)
    back, _ = _ranges(indptr, nbrs)
    home = np.repeat(owner, indptr[nbrs + 1] - indptr[nbrs])
    return np.concatenate([out, back[indices[back] == home]])


def _walk(pred: np.ndarray, root: int, node: int) -> list[int]:
    """root -> node along a Dijkstra predecessor array."""
    out = [node]
    while node != root:
        node = int(pred[node])
        out.append(node)
    return out[::-1]


class PathFinder:
    """Shortest routes over one snapshot's graph.

    Thread-safe. The weight array (distance ** power) of the few powers in use is
    cached; each thread edits a private copy of it per request (blocked edges set
    to inf) and puts back what it changed, so a query costs O(edges touched), not
    O(all edges).
    """

    def __init__(self, graph: sp.csr_array) -> None:
        g = tidy(graph)
        self.n = int(g.shape[0])
        self.indptr, self.indices = g.indptr, g.indices
        self.dist = g.data.astype(np.float64)
        self._weights: dict[float, np.ndarray] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._recent: dict[float, deque[float]] = {}  # D/2 of recent routes, per power

    def weights(self, power: float) -> np.ndarray:
        """distance ** power per edge (read-only, shared)."""
        key = round(float(power), 3)
        with self._lock:
            hit = self._weights.get(key)
            if hit is None:
                if len(self._weights) >= 3:
                    self._weights.pop(next(iter(self._weights)))
                hit = self.dist**key
                hit.setflags(write=False)
                self._weights[key] = hit
        return hit

    def _scratch(self, power: float, base: np.ndarray) -> np.ndarray:
        spaces: dict[float, np.ndarray] = getattr(self._local, "spaces", None) or {}
        self._local.spaces = spaces
        key = round(float(power), 3)
        if key not in spaces:
            if len(spaces) >= 2:
                spaces.pop(next(iter(spaces)))
            spaces[key] = base.copy()
        return spaces[key]

    def route(
        self,
        stops: Sequence[int],
        *,
        power: float = DEFAULT_POWER,
        avoid: Iterable[int] = (),
        min_similarity: float | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> Route:
        """Cheapest chain through `stops` in order, no node twice.

        Legs are routed one after another; each keeps off the nodes of the legs
        before it and off the stops still ahead. Raises NoPath when a leg has none.
        """
        if len(set(stops)) != len(stops):
            raise ValueError("stops must be distinct")
        base = self.weights(power)
        n, indptr, indices, dist = self.n, self.indptr, self.indices, self.dist
        if attachments:
            indptr, indices, data, dist = self._attach(attachments, base, power)
            n += len(attachments)
            scratch = False
        else:
            data = self._scratch(power, base)
            scratch = True
        touched: list[np.ndarray] = []
        try:
            if min_similarity is not None:
                touched.append(np.flatnonzero(dist > 1.0 - min_similarity + 1e-9))
                data[touched[-1]] = np.inf
            blocked = np.fromiter(set(avoid) - set(stops), dtype=np.int64)
            if len(blocked):
                touched.append(_edges_touching(indptr, indices, blocked))
                data[touched[-1]] = np.inf
            graph = sp.csr_array((data, indices, indptr), shape=(n, n), copy=False)
            chain, positions, cost = [int(stops[0])], [0], 0.0
            for i in range(len(stops) - 1):
                s, t = int(stops[i]), int(stops[i + 1])
                if len(chain) > 1:
                    touched.append(_edges_touching(indptr, indices, np.array(chain[:-1])))
                    graph.data[touched[-1]] = np.inf
                ahead = np.array(stops[i + 2 :], dtype=np.int64)
                pos = _edges_touching(indptr, indices, ahead)
                kept = graph.data[pos].copy()
                graph.data[pos] = np.inf
                try:
                    leg, leg_cost = self._leg(graph, s, t, power)
                except NoPath as exc:
                    raise NoPath(str(exc), leg=i) from None
                finally:
                    graph.data[pos] = kept
                chain.extend(leg[1:])
                positions.append(len(chain) - 1)
                cost += leg_cost
        finally:
            if scratch:
                for pos in touched:
                    data[pos] = base[pos]
        return Route(chain=chain, stops=positions, cost=cost)

    def _attach(
        self, attachments: Sequence[Attachment], base: np.ndarray, power: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Fresh CSR arrays with attachment i added as node N + i, linked both ways."""
        n = self.n
        ids = np.concatenate([a.ids for a in attachments]).astype(np.int64)
        virt = np.concatenate([np.full(len(a.ids), n + i) for i, a in enumerate(attachments)])
        d = np.clip(np.concatenate([a.dist for a in attachments]), MIN_DIST, 2.0)
        d = d.astype(np.float64)
        # A catalog row gains an edge to node N + i; that column sorts after all
        # others, so it is inserted at the end of the row.
        order = np.lexsort((virt, ids))
        ids, virt, d = ids[order], virt[order], d[order]
        at = self.indptr[ids + 1]
        indices = np.insert(self.indices, at, virt.astype(np.int32))
        dist = np.insert(self.dist, at, d)
        data = np.insert(base, at, d**power)
        indptr = self.indptr.astype(np.int64) + np.r_[0, np.cumsum(np.bincount(ids, minlength=n))]
        # Then the new nodes' own rows, each sorted by column.
        for i in range(len(attachments)):
            mine = np.flatnonzero(virt == n + i)
            mine = mine[np.argsort(ids[mine])]
            indptr = np.r_[indptr, indptr[-1] + len(mine)]
            indices = np.r_[indices, ids[mine].astype(np.int32)]
            dist = np.r_[dist, d[mine]]
            data = np.r_[data, d[mine] ** power]
        if indptr[-1] < 2**31:
            indptr = indptr.astype(np.int32)
        return indptr, indices, data, dist

    def _leg(self, graph: sp.csr_array, s: int, t: int, power: float) -> tuple[list[int], float]:
        """Exact cheapest s-t route: one Dijkstra search grown from both ends at once.

        scipy's multi-source search (min_only) settles each node once, from its
        nearer end. A route through an edge (u, w) with u settled from s and w from t
        costs d[u] + c(u, w) + d[w], and the least such cost is the distance D (the
        shortest route has such an edge). With a radius limit r it is still exact
        once it is <= 2r; so the search is first limited to a radius that settled
        most recent routes (two balls of radius D/2 hold a fraction of the nodes a
        plain search from s settles); if that fails, to half the best route seen, or
        unlimited when there was none.
        """
        with self._lock:
            recent = self._recent.setdefault(round(float(power), 3), deque(maxlen=64))
            past = list(recent)
        r = float(np.percentile(past, 75)) if len(past) >= 8 else math.inf
        while True:
            dist, pred, src = dijkstra(
                graph,
                directed=True,
                indices=[s, t],
                return_predecessors=True,
                min_only=True,
                limit=r,
            )
            total, u, w = _meet(graph, dist, src, s, t)
            if math.isfinite(total) and total <= 2.0 * r:
                recent.append(total / 2.0)
                return _walk(pred, s, u) + _walk(pred, t, w)[::-1], total
            if math.isinf(r):
                raise NoPath(f"no route from {s} to {t}")
            r = total / 2.0 if math.isfinite(total) else math.inf  # total/2 settles it


def _meet(
    graph: sp.csr_array, dist: np.ndarray, src: np.ndarray, s: int, t: int
) -> tuple[float, int, int]:
    """(cost, u, w) of the cheapest route s ~> u -> w ~> t through an edge from the
    s-side to the t-side of a two-source search; cost inf when there is none."""
    side_s, side_t = src == s, src == t
    # Enumerate the edges of the smaller side only.
    flip = int(side_s.sum()) > int(side_t.sum())
    near, far = (side_t, side_s) if flip else (side_s, side_t)
    edges, owner = _ranges(graph.indptr, np.flatnonzero(near))
    cross = far[graph.indices[edges]]
    edges, owner = edges[cross], owner[cross]
    if not len(edges):
        return math.inf, -1, -1
    other = graph.indices[edges]
    cand = dist[owner] + graph.data[edges] + dist[other]
    best = int(np.argmin(cand))
    u, w = int(owner[best]), int(other[best])
    return float(cand[best]), *((w, u) if flip else (u, w))


# ---------------------------------------------------------------- chains


def resample(stops: Sequence[int], arc: np.ndarray, budget: int) -> list[int]:
    """Positions of a chain to keep so that at most `budget` remain: every stop,
    and in each leg the points nearest evenly spaced fractions of its length.

    `arc` is the cumulative distance along the chain (arc[0] == 0).
    """
    size = len(arc)
    if size <= budget:
        return list(range(size))
    if budget < len(stops):
        raise ValueError(f"cannot keep {len(stops)} stops in {budget} images")
    legs = list(zip(stops[:-1], stops[1:], strict=True))
    inner = np.array([b - a - 1 for a, b in legs])
    length = np.array([arc[b] - arc[a] for a, b in legs]) + 1e-12
    spare = budget - len(stops)
    # Share the spare places by leg length, never more than a leg has.
    share = np.minimum(np.floor(spare * length / length.sum()), inner).astype(np.int64)
    while share.sum() < spare and (share < inner).any():
        gap = np.where(share < inner, length / (share + 1), -1.0)
        share[int(np.argmax(gap))] += 1
    keep = set(stops)
    for (a, b), m in zip(legs, share, strict=True):
        if m > 0:
            goals = arc[a] + (arc[b] - arc[a]) * np.arange(1, m + 1) / (m + 1)
            hi = np.clip(np.searchsorted(arc, goals), a + 1, b - 1)
            lo = np.clip(hi - 1, a + 1, b - 1)
            near = np.where(np.abs(arc[lo] - goals) <= np.abs(arc[hi] - goals), lo, hi)
            keep.update(int(p) for p in near)
    return sorted(keep)


def step_similarities(vectors: np.ndarray) -> np.ndarray:
    """Cosine similarity of each consecutive pair of rows (unit vectors)."""
    v = np.asarray(vectors, dtype=np.float64)
    return np.einsum("ij,ij->i", v[:-1], v[1:]) if len(v) > 1 else np.zeros(0)


def tour_order(vectors: np.ndarray, max_passes: int = 20) -> np.ndarray:
    """An order through all of `vectors` (unit rows) that keeps each step short:
    an open path from the row least like the others, nearest unvisited next, then
    2-opt (reverse any stretch that shortens the path in cosine distance) until
    no reversal helps or `max_passes` are spent. Positions into `vectors`."""
    n = len(vectors)
    if n <= 2:
        return np.arange(n)
    v = np.asarray(vectors, np.float64)
    dist = np.clip(1.0 - v @ v.T, 0.0, None)
    start = int(np.argmax(dist.sum(axis=1)))
    order = [start]
    free = np.ones(n, dtype=bool)
    free[start] = False
    for _ in range(n - 1):
        d = np.where(free, dist[order[-1]], np.inf)
        nxt = int(np.argmin(d))
        order.append(nxt)
        free[nxt] = False
    path = np.array(order)
    for _ in range(max_passes):
        improved = False
        for i in range(n - 2):
            # Reverse path[i+1 .. j]: edges (i, i+1) and (j, j+1) become (i, j), (i+1, j+1);
            # j = n-1 has no edge after it (the open end).
            a, b = path[i], path[i + 1]
            js = np.arange(i + 2, n)
            c = path[js]
            after = np.append(path[js[:-1] + 1], -1)
            old = dist[a, b] + np.where(after >= 0, dist[c, after], 0.0)
            new = dist[a, c] + np.where(after >= 0, dist[b, after], 0.0)
            gain = old - new
            best = int(np.argmax(gain))
            if gain[best] > 1e-9:
                j = int(js[best])
                path[i + 1 : j + 1] = path[i + 1 : j + 1][::-1].copy()
                improved = True
        if not improved:
            break
    return path
