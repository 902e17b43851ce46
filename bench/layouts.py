"""Layout time and quality per method at 1k, 10k and 100k points.

1k: real embeddings, the first 1,000 rows of a published snapshot (`--data`, e.g.
a build of images/ plus ../shared/data/photos: 1,003 images). Larger sizes:
synthetic clustered unit vectors of the same dimension (`clustered()`: 200 Gaussian
clusters of varied size and spread around random centres), because no real
collection that large ships with the project.

For each size it runs what build() runs, timed apart: the FAISS k-NN (k = 90, the
one pass shared with the path graph), PCA to 50, openTSNE (Barnes-Hut below 10k,
FFT from 10k), UMAP on the same k-NN, the grid (blocked linear assignment on the
t-SNE map), and then, in the same run, scikit-learn's Barnes-Hut t-SNE on the raw
vectors (its own k-NN included, as a user of it would run it) up to
`--sklearn-max` points. With `--pca-knn` (default up to 10k) it also measures the
alternative of finding neighbours in PCA-50 space instead of the full vectors.

Figures (one JSON line each; `n` is the number of points, `data` real/synthetic):
  knn_seconds, pca_seconds, tsne_seconds, umap_seconds, grid_seconds,
  all_layouts_seconds (k-NN + PCA + t-SNE + UMAP + grid: the build's map stage,
  quality figures excluded), sklearn_tsne_seconds, and per method
  <method>_trustworthiness (k = 10, on a 1,000-point sample) and
  <method>_knn_preservation; pca_knn_seconds and tsne_pca_knn_trustworthiness.

  python bench/layouts.py --data /tmp/pix1k/data --sizes 1000,10000
  python bench/layouts.py --sizes 100000 --sklearn-max 0

With `--sample S` it measures instead what build() does above its layout sample
(LayoutParams.sample): the whole map stage (compute_maps: PCA, t-SNE, UMAP, grid,
quality, clusters) fitted on S images with the rest placed, next to the same
stage fitted on every image (up to `--full-max` points), and their quality:
  sampled_maps_seconds, full_maps_seconds, speedup, and per layout
  <layout>_trustworthiness / <layout>_knn_preservation with fit=sampled|full.

  python bench/layouts.py --sizes 50000 --sample 10000 --sklearn-max 0
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from _common import emit, note

BENCH = "layouts"


def clustered(n: int, dim: int, seed: int = 0, clusters: int = 200) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    sizes = rng.dirichlet(np.full(clusters, 2.0))
    labels = rng.choice(clusters, size=n, p=sizes)
    spread = rng.uniform(0.6, 1.4, clusters).astype(np.float32)
    x = centres[labels] + spread[labels, None] * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def real_vectors(data: Path, n: int) -> np.ndarray:
    from indexer.snapshot import open_snapshot

    snap = open_snapshot(data)
    if snap.count < n:
        raise SystemExit(f"{data} has {snap.count} images, fewer than {n}")
    return np.asarray(snap.vectors[:n], dtype=np.float32)


def run_size(n: int, vectors: np.ndarray, kind: str, args: argparse.Namespace) -> None:
    from indexer import index as faiss_index
    from indexer import layout, mapfit, neighbours
    from indexer.mapfit import PARALLEL_MIN
    from indexer.maps import knn_preservation, trustworthiness

    params = layout.LayoutParams(seed=args.seed)
    jobs = 1 if n < PARALLEL_MIN else -1  # what compute_maps does
    ctx = {"n": n, "data": kind, "dim": int(vectors.shape[1]), "runs": 1}

    def figure(name: str, value: float, unit: str = "s", **extra: object) -> None:
        emit(BENCH, name, round(value, 4 if unit != "s" else 2), unit, **ctx, **extra)

    def quality(method: str, pos: np.ndarray, ids: np.ndarray) -> None:
        tw = trustworthiness(vectors, pos, seed=args.seed)
        kp = knn_preservation(ids, pos)
        figure(f"{method}_trustworthiness", tw or 0.0, "ratio", k=10, sample=min(n, 1000))
        figure(f"{method}_knn_preservation", kp or 0.0, "ratio", k=10)

    from threadpoolctl import threadpool_limits

    with threadpool_limits(1 if jobs == 1 else None):
        t = time.perf_counter()
        index = faiss_index.build_index(vectors)
        sims, ids = neighbours.knn_self(index, vectors, layout.knn_needed(layout.LAYOUTS, params))
        knn_s = time.perf_counter() - t
        figure("knn_seconds", knn_s, k=int(ids.shape[1]))
        t = time.perf_counter()
        reduced = mapfit.pca(vectors, seed=args.seed)
        pca_s = time.perf_counter() - t
        figure("pca_seconds", pca_s, components=int(reduced.shape[1]))
        note(f"n={n}: k-NN {knn_s:.1f}s, PCA {pca_s:.1f}s; t-SNE ...")
        t = time.perf_counter()
        tsne_pos, used = mapfit.tsne(reduced, sims, ids, seed=args.seed, n_jobs=jobs)
        tsne_s = time.perf_counter() - t
        figure("tsne_seconds", tsne_s, method=used["method"])
        note(f"n={n}: t-SNE {tsne_s:.1f}s; UMAP ...")
        t = time.perf_counter()
        umap_pos, _ = mapfit.umap(reduced, sims, ids, seed=args.seed)
        umap_s = time.perf_counter() - t
        figure("umap_seconds", umap_s, method="umap-learn", note="includes numba JIT if cold")
        t = time.perf_counter()
        cells, cols, rows = layout.grid_cells(tsne_pos)
        grid_pos = layout.grid_positions(cells, cols, rows)
        grid_s = time.perf_counter() - t
        figure("grid_seconds", grid_s, block=layout.GRID_BLOCK)
        figure("all_layouts_seconds", knn_s + pca_s + tsne_s + umap_s + grid_s)
        for method, pos in (("tsne", tsne_pos), ("umap", umap_pos), ("grid", grid_pos)):
            quality(method, pos, ids)

        if n <= args.pca_knn:
            # The alternative: neighbours from PCA-50 vectors (cheaper k-NN, fewer dims).
            t = time.perf_counter()
            small = reduced / np.linalg.norm(reduced, axis=1, keepdims=True)
            p_sims, p_ids = neighbours.knn_self(faiss_index.build_index(small), small, 90)
            figure("pca_knn_seconds", time.perf_counter() - t)
            p_pos, _ = mapfit.tsne(reduced, p_sims, p_ids, seed=args.seed, n_jobs=jobs)
            tw = trustworthiness(vectors, p_pos, seed=args.seed) or 0.0
            figure("tsne_pca_knn_trustworthiness", tw, "ratio", k=10)

    if n <= args.sklearn_max:
        from sklearn.manifold import TSNE

        note(f"n={n}: scikit-learn Barnes-Hut t-SNE ...")
        sk_jobs = 1 if jobs == 1 else os.cpu_count()  # the same threads as openTSNE had
        t = time.perf_counter()
        sk = TSNE(2, perplexity=30, init="pca", random_state=args.seed, n_jobs=sk_jobs)
        sk_pos = layout.normalise(sk.fit_transform(vectors))
        figure(
            "sklearn_tsne_seconds",
            time.perf_counter() - t,
            method="sklearn-barnes_hut",
            threads=sk_jobs,
        )
        quality("sklearn_tsne", sk_pos, ids)


def run_sampled(n: int, vectors: np.ndarray, kind: str, args: argparse.Namespace) -> None:
    from indexer import index as faiss_index
    from indexer import layout, neighbours
    from indexer.mapfit import compute_maps

    ctx = {"n": n, "data": kind, "sample": args.sample, "runs": 1}
    index = faiss_index.build_index(vectors)
    k = layout.knn_needed(layout.LAYOUTS, layout.LayoutParams())
    sims, ids = neighbours.knn_self(index, vectors, k)
    labels: list[str | None] = [None] * n
    seconds = {}
    for fit, size in (("sampled", args.sample), ("full", n)):
        if fit == "full" and n > args.full_max:
            continue
        note(f"n={n}: maps fitted on {min(size, n)} images ...")
        params = layout.LayoutParams(seed=args.seed, sample=max(size, 100))
        t = time.perf_counter()
        maps = compute_maps(vectors, sims, ids, labels=labels, params=params)
        seconds[fit] = time.perf_counter() - t
        emit(BENCH, f"{fit}_maps_seconds", round(seconds[fit], 2), "s", **ctx)
        for name, entry in maps.info["layouts"].items():
            q = entry["quality"]
            emit(BENCH, f"{name}_trustworthiness", q["trustworthiness"], "ratio", fit=fit, **ctx)
            emit(BENCH, f"{name}_knn_preservation", q["knn_preservation"], "ratio", fit=fit, **ctx)
    if len(seconds) == 2:
        emit(BENCH, "speedup", round(seconds["full"] / seconds["sampled"], 2), "x", **ctx)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--data", type=Path, help="data dir with a snapshot of >= 1k real images")
    ap.add_argument("--sklearn-max", type=int, default=10_000)
    ap.add_argument("--pca-knn", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample", type=int, default=0, help="measure fitting on a sample this big")
    ap.add_argument("--full-max", type=int, default=100_000, help="with --sample: full fit up to")
    args = ap.parse_args()
    for n in [int(s) for s in args.sizes.split(",") if s]:
        if n <= 1000 and args.data:
            vectors, kind = real_vectors(args.data, n), "real"
        else:
            vectors, kind = clustered(n, 1280, seed=args.seed), "synthetic"
        (run_sampled if args.sample else run_size)(n, vectors, kind, args)


if __name__ == "__main__":
    main()
