"""Paths: graph build time, path query latency and chain quality.

Run: python bench/paths.py [--only quality,scale,http] [--sizes 10000,100000,1000000]
                           [--photos PATH] [--data DIR] [--pairs 300] [--queries 200]

quality  On the real photos (a snapshot built from --photos, or the one published in
         --data): for graph k in 5,10,15,20,30 and power p in 1,2,3,4,6, over --pairs
         random pairs: mean step similarity, mean weakest step, mean hops, and the
         share of pairs whose weakest step is at least as strong as p=1's.
         Figures quality_* (one line per k, p).
scale    Synthetic clustered unit vectors (dim 64, clusters inside super-clusters) at
         each size: the k-NN pass (exact FAISS Flat up to 200k, IVF above; shared with
         the layouts, so reported apart), graph build from the k-NN lists, in-process
         path query latency (pixscape's two-ball Dijkstra) next to one plain scipy
         Dijkstra and networkx on the same graph (Python build + nx.shortest_path).
         networkx is skipped at 1M (it needs ~15 GB and minutes per query).
http     A 100k synthetic snapshot served by `pixscape serve`; GET /api/path p50/p90/
         p99 over loopback HTTP, one keep-alive client, --queries random pairs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
from _common import DEFAULT_PHOTOS, emit, note, percentile, serve

from indexer import graph as G
from indexer import index as faiss_index
from indexer import neighbours
from indexer import routing as R

BENCH = "paths"
DIM = 64
KNN_K = 30


# ---------------------------------------------------------------- data


def clustered(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    """Unit vectors in clusters (sizes vary) inside super-clusters around a common
    mean, so that near neighbours are ~0.8 similar and random pairs ~0.2."""
    rng = np.random.default_rng(seed)
    n_super, n_clusters = max(2, n // 5000), max(4, n // 100)
    supers = rng.normal(size=(n_super, dim)).astype(np.float32)
    sizes = rng.pareto(1.5, n_clusters) + 1
    cluster_of = rng.choice(n_clusters, size=n, p=sizes / sizes.sum())
    centres = supers[rng.integers(0, n_super, n_clusters)] + 0.8 * rng.normal(
        size=(n_clusters, dim)
    ).astype(np.float32)
    out = np.empty((n, dim), np.float32)
    mean = rng.normal(size=dim).astype(np.float32)
    for start in range(0, n, 200_000):
        c = cluster_of[start : start + 200_000]
        noise = rng.normal(size=(len(c), dim)).astype(np.float32)
        out[start : start + len(c)] = 0.6 * mean + centres[c] + 0.7 * noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out


def knn(vectors: np.ndarray, k: int = KNN_K) -> tuple[float, str, np.ndarray, np.ndarray]:
    import faiss

    t0 = time.perf_counter()
    if len(vectors) <= faiss_index.EXACT_LIMIT:
        sims, ids = neighbours.knn_self(faiss_index.build_index(vectors), vectors, k)
        return time.perf_counter() - t0, "Flat (exact)", sims, ids
    nlist = 4096
    quant = faiss.IndexFlatIP(vectors.shape[1])
    index = faiss.IndexIVFFlat(quant, vectors.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(vectors[:: max(1, len(vectors) // (nlist * 40))])
    index.add(vectors)
    index.nprobe = 8
    sims, ids = neighbours.knn_self(index, vectors, k)
    return time.perf_counter() - t0, f"IVF{nlist},Flat nprobe=8 (approximate)", sims, ids


def pairs(n: int, count: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.integers(0, n, size=(count * 2, 2))
    return p[p[:, 0] != p[:, 1]][:count]


# ---------------------------------------------------------------- quality


def photo_vectors(photos: Path, data: Path | None) -> np.ndarray:
    from indexer.build import build
    from indexer.snapshot import open_snapshot

    if data is None or not (data / "CURRENT").exists():
        data = data or Path(tempfile.mkdtemp(prefix="pixscape-paths-bench-")) / "data"
        note(f"building a snapshot of {photos} into {data}")
        build(photos, data)
    snap = open_snapshot(data)
    return np.asarray(snap.vectors, dtype=np.float32)


def quality(vectors: np.ndarray, n_pairs: int) -> None:
    n = len(vectors)
    _, _, sims, ids = knn(vectors)
    todo = pairs(n, n_pairs)
    for k in (5, 10, 15, 20, 30):
        graph, info = G.build_graph(vectors, sims, ids, k=k)
        finder = R.PathFinder(graph)
        weakest_p1: np.ndarray | None = None
        for p in (1.0, 2.0, 3.0, 4.0, 6.0):
            weakest, mean, hops = [], [], []
            for s, t in todo:
                chain = finder.route([int(s), int(t)], power=p).chain
                step = R.step_similarities(vectors[chain])
                weakest.append(step.min())
                mean.append(step.mean())
                hops.append(len(chain) - 1)
            w = np.array(weakest)
            if p == 1.0:
                weakest_p1 = w
            assert weakest_p1 is not None
            extra = {
                "n": n,
                "pairs": len(todo),
                "k": k,
                "p": p,
                "components_before": info.components_before,
                "runs": 1,
            }
            emit(BENCH, "quality_mean_weakest_step_sim", round(float(w.mean()), 4), "cos", **extra)
            emit(BENCH, "quality_mean_step_sim", round(float(np.mean(mean)), 4), "cos", **extra)
            emit(BENCH, "quality_mean_hops", round(float(np.mean(hops)), 2), "edges", **extra)
            emit(
                BENCH,
                "quality_weakest_not_worse_than_p1",
                round(float(np.mean(w >= weakest_p1 - 1e-6)), 4),
                "share",
                **extra,
            )


# ---------------------------------------------------------------- scale


def scale(n: int, queries: int, k: int, power: float, classic: bool) -> None:
    from scipy.sparse.csgraph import dijkstra

    note(f"{n:,} synthetic vectors")
    vectors = clustered(n)
    knn_s, how, sims, ids = knn(vectors)
    base = {"n": n, "dim": DIM, "k": k, "p": power}
    emit(BENCH, "knn_pass_s", round(knn_s, 2), "s", knn=how, knn_k=KNN_K, runs=1, **base)
    t0 = time.perf_counter()
    graph, info = G.build_graph(vectors, sims, ids, k=k)
    build_s = time.perf_counter() - t0
    emit(
        BENCH,
        "graph_build_s",
        round(build_s, 2),
        "s",
        edges=info.edges,
        components_before=info.components_before,
        join_edges=info.join_edges,
        runs=1,
        **base,
    )
    del sims, ids
    finder = R.PathFinder(graph)
    todo = pairs(n, queries if n < 1_000_000 else min(queries, 50))
    finder.route([int(todo[0, 0]), int(todo[0, 1])], power=power)  # warm the weight cache
    lat = []
    for s, t in todo:
        t0 = time.perf_counter()
        finder.route([int(s), int(t)], power=power)
        lat.append((time.perf_counter() - t0) * 1000)
    q = {"queries": len(lat), "runs": 1, **base}
    emit(BENCH, "path_query_p50_ms", round(percentile(lat, 50), 2), "ms", **q)
    emit(BENCH, "path_query_p90_ms", round(percentile(lat, 90), 2), "ms", **q)
    # The plain alternative: one full single-source scipy Dijkstra per query.
    w = graph.astype(np.float64)
    w.data **= power
    plain = []
    for s, _ in todo[: min(len(todo), 30 if n < 1_000_000 else 10)]:
        t0 = time.perf_counter()
        dijkstra(w, directed=True, indices=int(s), return_predecessors=True)
        plain.append((time.perf_counter() - t0) * 1000)
    emit(
        BENCH,
        "scipy_full_dijkstra_p50_ms",
        round(percentile(plain, 50), 2),
        "ms",
        **{**q, "queries": len(plain)},
    )
    if not classic:
        emit(BENCH, "networkx_build_s", None, "s", skipped="too large for networkx", **base)
        return
    import networkx as nx

    coo = w.tocoo()
    upper = coo.row < coo.col
    t0 = time.perf_counter()
    nxg = nx.Graph()
    nxg.add_nodes_from(range(n))
    for a, b, c in zip(
        coo.row[upper].tolist(), coo.col[upper].tolist(), coo.data[upper].tolist(), strict=True
    ):
        nxg.add_edge(a, b, weight=c)  # the notebook's loop, on the same graph
    emit(BENCH, "networkx_build_s", round(time.perf_counter() - t0, 2), "s", runs=1, **base)
    nlat = []
    for s, t in todo[: min(len(todo), 20 if n > 20_000 else 100)]:
        t0 = time.perf_counter()
        nx.shortest_path(nxg, int(s), int(t), weight="weight")
        nlat.append((time.perf_counter() - t0) * 1000)
    emit(
        BENCH,
        "networkx_query_p50_ms",
        round(percentile(nlat, 50), 2),
        "ms",
        **{**q, "queries": len(nlat)},
    )


# ---------------------------------------------------------------- http


def synthetic_snapshot(data: Path, n: int, k: int, power: float) -> None:
    """A real snapshot of n synthetic images (1 px thumbnails, fake catalog)."""
    from indexer.build import build
    from indexer.catalog import CatalogRow
    from indexer.manifest import CollectionEntry, Contents, GraphEntry, ModelEntry
    from indexer.snapshot import graph_to_bytes, publish, write_snapshot

    models = data / "models"
    photos = Path(tempfile.mkdtemp(prefix="pixscape-paths-one-"))
    (photos / "a.png").write_bytes(_tiny_png())
    build(photos, data)  # exports the model into data/models
    onnx = next(models.glob("*.onnx"))
    vectors = clustered(n)
    _, _, sims, ids = knn(vectors)
    graph, info = G.build_graph(vectors, sims, ids, k=k)
    rows = [
        CatalogRow(i, f"synthetic/{i:07d}.png", f"{i:064x}", 1, 1, 1, "PNG", "synthetic")
        for i in range(n)
    ]
    thumb = b"RIFF"  # never fetched by this benchmark
    index = faiss_index.build_index(vectors)
    note(f"writing a {n:,}-image synthetic snapshot (fsync off: a throwaway folder)")
    with mock.patch("os.fsync"):
        snap = write_snapshot(
            data,
            rows=rows,
            vectors=vectors,
            index_bytes=faiss_index.to_bytes(index),
            model_path=onnx,
            thumbnails=[thumb] * n,
            contents=Contents(
                model=ModelEntry(id="synthetic", fingerprint="0", input_size=224, dim=DIM),
                index_type="Flat",
                collection=CollectionEntry(root=str(photos), files_seen=n),
                graph=GraphEntry(
                    k=k,
                    power=power,
                    nodes=info.nodes,
                    edges=info.edges,
                    components_before=info.components_before,
                    components_joined_by=info.join_edges,
                    seconds=0.0,
                ),
            ),
            extra_files={"graph.npz": graph_to_bytes(graph)},
        )
    publish(data, snap)


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def http(n: int, queries: int, k: int, power: float) -> None:
    import httpx2 as httpx

    with tempfile.TemporaryDirectory(prefix="pixscape-paths-http-") as tmp:
        data = Path(tmp) / "data"
        synthetic_snapshot(data, n, k, power)
        with serve(data, timeout=300.0) as base:
            todo = pairs(n, queries + 5, seed=7)
            lat, took, errors, hops = [], [], 0, []
            with httpx.Client(timeout=60.0) as client:
                for i, (s, t) in enumerate(todo):
                    t0 = time.perf_counter()
                    r = client.get(f"{base}/api/path", params={"source": int(s), "target": int(t)})
                    ms = (time.perf_counter() - t0) * 1000
                    if i < 5:
                        continue  # warm-up: the first builds the path engine
                    if r.status_code != 200:
                        errors += 1
                        continue
                    lat.append(ms)
                    took.append(r.json()["took_ms"])
                    hops.append(r.json()["hops"])
            extra = {"n": n, "queries": len(lat), "errors": errors, "k": k, "p": power, "runs": 1}
            extra["mean_hops"] = round(float(np.mean(hops)), 1)
            emit(BENCH, "http_path_p50_ms", round(percentile(lat, 50), 2), "ms", **extra)
            emit(BENCH, "http_path_p90_ms", round(percentile(lat, 90), 2), "ms", **extra)
            emit(BENCH, "http_path_p99_ms", round(percentile(lat, 99), 2), "ms", **extra)
            emit(BENCH, "http_path_server_p50_ms", round(percentile(took, 50), 2), "ms", **extra)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", default="quality,scale,http")
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    ap.add_argument("--data", type=Path, default=None, help="reuse this data dir's snapshot")
    ap.add_argument("--pairs", type=int, default=300)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--http-size", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=G.DEFAULT_K)
    ap.add_argument("--power", type=float, default=G.DEFAULT_POWER)
    args = ap.parse_args()
    parts = set(args.only.split(","))
    if "quality" in parts:
        quality(photo_vectors(args.photos, args.data), args.pairs)
    if "scale" in parts:
        for n in (int(s) for s in args.sizes.split(",")):
            scale(n, args.queries, args.k, args.power, classic=n <= 200_000)
    if "http" in parts:
        http(args.http_size, args.queries, args.k, args.power)
    return 0


if __name__ == "__main__":
    sys.exit(main())
