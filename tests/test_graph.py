"""The k-NN graph and its routes, on the real snapshot's graph and vectors."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, dijkstra

from indexer import graph as G
from indexer import routing as R
from indexer.index import build_index
from indexer.neighbours import knn_self

from .conftest import Built


@pytest.fixture(scope="module")
def finder(built: Built) -> R.PathFinder:
    assert built.snapshot.graph is not None
    return R.PathFinder(built.snapshot.graph)


def _pairs(n: int, count: int, seed: int = 0) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    out = [(int(a), int(b)) for a, b in rng.integers(0, n, size=(count * 2, 2)) if a != b]
    return out[:count]


def _is_edge(graph: sp.csr_array, a: int, b: int) -> bool:
    row = graph.indices[graph.indptr[a] : graph.indptr[a + 1]]
    return bool(np.isin(b, row))


def _vectors(built: Built) -> np.ndarray:
    return np.asarray(built.snapshot.vectors, dtype=np.float32)


def test_snapshot_graph_is_symmetric_connected_and_described(built: Built) -> None:
    snap = built.snapshot
    graph = snap.graph
    assert graph is not None and graph.shape == (snap.count, snap.count)
    assert (abs(graph - graph.T) > 1e-6).nnz == 0
    canonical = G.canonical_ids([r.sha256 for r in snap.rows])
    nodes = np.flatnonzero(canonical == np.arange(snap.count))
    _, labels = connected_components(graph, directed=False)
    assert len(np.unique(labels[nodes])) == 1
    assert (np.diff(graph.indptr)[nodes] >= 1).all()
    params = snap.manifest.graph
    assert params is not None
    assert params.k == G.DEFAULT_K and params.power == G.DEFAULT_POWER
    assert params.edges == graph.nnz // 2 and params.nodes == len(nodes)
    assert "graph.npz" in snap.manifest.files  # checksummed like the core files


def test_edge_weights_are_cosine_distances(built: Built) -> None:
    graph, v = built.snapshot.graph, _vectors(built)
    assert graph is not None
    coo = graph.tocoo()
    expected = 1.0 - np.einsum("ij,ij->i", v[coo.row], v[coo.col])
    assert np.allclose(coo.data, np.clip(expected, G.MIN_DIST, 2), atol=1e-5)


def test_routes_follow_edges_are_exact_and_end_where_asked(
    built: Built, finder: R.PathFinder
) -> None:
    graph = built.snapshot.graph
    assert graph is not None
    weights = graph.astype(np.float64)
    weights.data **= G.DEFAULT_POWER
    for s, t in _pairs(built.snapshot.count, 60):
        route = finder.route([s, t])
        assert (
            route.chain[0] == s
            and route.chain[-1] == t
            and route.stops == [0, len(route.chain) - 1]
        )
        assert len(set(route.chain)) == len(route.chain)
        assert all(_is_edge(graph, a, b) for a, b in pairwise(route.chain))
        cost = sum(weights[a, b] for a, b in pairwise(route.chain))
        assert route.cost == pytest.approx(cost, rel=1e-9)
        assert route.cost == pytest.approx(dijkstra(weights, indices=s)[t], rel=1e-9)


def test_power_strengthens_the_weakest_step(built: Built, finder: R.PathFinder) -> None:
    """Not a theorem for each pair (a p > 1 route can trade a slightly weaker step
    for many strong ones), so it is checked over many pairs."""
    v = _vectors(built)
    raw, smooth = [], []
    for s, t in _pairs(built.snapshot.count, 200, seed=1):
        raw.append(R.step_similarities(v[finder.route([s, t], power=1.0).chain]).min())
        smooth.append(R.step_similarities(v[finder.route([s, t]).chain]).min())
    raw_a, smooth_a = np.array(raw), np.array(smooth)
    assert np.mean(smooth_a >= raw_a - 1e-6) >= 0.95
    assert smooth_a.mean() >= raw_a.mean()


def test_waypoints_in_order_without_repeats(built: Built, finder: R.PathFinder) -> None:
    graph = built.snapshot.graph
    assert graph is not None
    rng = np.random.default_rng(2)
    for _ in range(20):
        stops = [int(x) for x in rng.choice(built.snapshot.count, 4, replace=False)]
        try:
            route = finder.route(stops)
        except R.NoPath as exc:  # legal only when earlier legs cut a later one off
            assert exc.leg > 0
            continue
        assert [route.chain[p] for p in route.stops] == stops
        assert route.stops == sorted(route.stops)
        assert len(set(route.chain)) == len(route.chain)
        assert all(_is_edge(graph, a, b) for a, b in pairwise(route.chain))


def test_avoid_and_similarity_floor(built: Built, finder: R.PathFinder) -> None:
    v = _vectors(built)
    s, t = 0, built.snapshot.count - 1
    first = finder.route([s, t])
    inner = first.chain[1:-1]
    if inner:
        again = finder.route([s, t], avoid=inner)
        assert not set(inner) & set(again.chain)
    floor = float(R.step_similarities(v[first.chain]).min()) - 0.05
    floored = finder.route([s, t], min_similarity=floor)
    assert R.step_similarities(v[floored.chain]).min() >= floor - 1e-6
    with pytest.raises(R.NoPath):
        finder.route([s, t], min_similarity=0.999)
    # The finder's shared weights are untouched by the masks above.
    assert finder.route([s, t]).chain == first.chain


def test_attached_upload_routes_through_its_neighbours(built: Built, finder: R.PathFinder) -> None:
    v = _vectors(built)
    n = built.snapshot.count
    q = v[5] + v[6]
    q /= np.linalg.norm(q)
    sims = v @ q
    near = np.argsort(-sims)[:4]
    attach = R.Attachment(ids=near, dist=1.0 - sims[near])
    route = finder.route([n, 100], attachments=[attach])
    assert route.chain[0] == n and route.chain[-1] == 100 and route.chain[1] in set(near)
    both = finder.route(
        [n, n + 1], attachments=[attach, R.Attachment(np.array([100]), np.array([0.2]))]
    )
    assert both.chain[0] == n and both.chain[-1] == n + 1 and both.chain[-2] == 100


def test_components_are_joined_and_duplicates_carry_no_edges() -> None:
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(6, 16)) * 4
    v = (centres[rng.integers(0, 6, 600)] + rng.normal(size=(600, 16))).astype(np.float32)
    v = np.r_[v, v[:40], v[:40]]  # 80 exact duplicates of the first 40
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    keys = [f"h{i}" for i in range(600)] + [f"h{i}" for i in range(40)] * 2
    sims, ids = knn_self(build_index(v), v, 30)
    canonical = G.canonical_ids(keys)
    graph, info = G.build_graph(v, sims, ids, k=3, canonical=canonical)
    assert info.components_before > 1 and info.join_edges >= info.components_before - 1
    assert info.nodes == 600 and np.diff(graph.indptr)[600:].max() == 0
    assert connected_components(graph[:600][:, :600], directed=False)[0] == 1
    finder = R.PathFinder(graph)
    for s, t in _pairs(600, 40, seed=4):
        chain = finder.route([s, t]).chain
        assert max(chain) < 600 and len({keys[i] for i in chain}) == len(chain)


def test_hinted_links_join_components_without_a_search() -> None:
    """An update hands the previous graph's edges in: its joining links are used."""
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(5, 16)) * 6
    v = (centres[np.repeat(np.arange(5), 80)] + rng.normal(size=(400, 16))).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    sims, ids = knn_self(build_index(v), v, 4)  # too short to reach across islands
    full, info = G.build_graph(v, sims, ids, k=3)
    assert info.components_before == 5 and info.join_edges >= 4
    edges = full.tocoo()
    hinted, again = G.build_graph(v, sims, ids, k=3, hints=(edges.row, edges.col, edges.data))
    assert again.components_before == 5 and again.join_edges == 4  # a spanning tree's worth
    assert connected_components(hinted, directed=False)[0] == 1
    # Joined by links the search had found, at their true distances.
    h = hinted.tocoo()
    assert np.array_equal(np.asarray(full[h.row, h.col]).ravel(), h.data)
    # Hints that do not cross components change nothing; bad ones are ignored.
    own = np.flatnonzero(ids[:, 0] >= 0)[:20]
    same, _ = G.build_graph(v, sims, ids, k=3, hints=(own, ids[own, 0], 1 - sims[own, 0]))
    assert (same != full).nnz == 0


def test_no_route_when_cut_off() -> None:
    graph = sp.csr_array(np.array([[0, 0.1, 0], [0.1, 0, 0.2], [0, 0.2, 0]], dtype=np.float32))
    finder = R.PathFinder(graph)
    assert finder.route([0, 2]).chain == [0, 1, 2]
    with pytest.raises(R.NoPath):
        finder.route([0, 2], avoid=[1])
    with pytest.raises(R.NoPath) as caught:
        finder.route([1, 0, 2])  # 0 is a dead end once 1 is used
    assert caught.value.leg == 1


def test_resample_keeps_stops_and_budget() -> None:
    arc = np.cumsum(np.r_[0.0, np.full(40, 0.1)])
    stops = [0, 10, 40]
    keep = R.resample(stops, arc, 8)
    assert len(keep) <= 8 and set(stops) <= set(keep) and keep == sorted(keep)
    assert R.resample(stops, arc, 100) == list(range(41))
    with pytest.raises(ValueError):
        R.resample(stops, arc, 2)


def test_graph_k_is_checked() -> None:
    v = np.eye(4, dtype=np.float32)
    sims, ids = knn_self(build_index(v), v, 3)
    with pytest.raises(ValueError):
        G.build_graph(v, sims, ids, k=4)
    graph, info = G.build_graph(v, sims, ids, k=1)
    assert info.components_before >= 1 and connected_components(graph)[0] == 1
