"""Fitting the maps in full: PCA, t-SNE, UMAP and the k-means clusters. No I/O.

compute_maps() is what a full build runs (indexer.stages imports it only then):
the layouts over the build's one FAISS k-NN pass (`index.knn_self`: self excluded,
-1 padded), so neither t-SNE nor UMAP runs a nearest-neighbour search of its own;
each scored against the embedding (maps.layout_quality); the images grouped into
regions. Incremental builds and the service never fit: they carry the previous
maps and place new images (indexer.update, indexer.layout.place).

Choices, measured on this 2-core machine (bench/layouts.py):
- t-SNE is openTSNE, not scikit-learn: it takes the FAISS neighbours as they are,
  and its FFT-interpolated gradient is linear in N, so 10k points take about half of
  scikit-learn's Barnes-Hut time and 100k stay within minutes. Below 10k points its
  own Barnes-Hut is the faster of the two, so we let openTSNE pick ("auto").
- PCA (50 components) is used for the t-SNE initialisation (a PCA init keeps the
  global arrangement stable between runs), as UMAP's data argument and for the
  k-means clusters. It is not used for neighbours: those come exact from the full
  vectors, which the path graph needs anyway, so a reduced k-NN would only add a
  second, worse pass.
- The heavy libraries (openTSNE, umap/numba, scikit-learn, threadpoolctl) are the
  indexer extra's and are imported inside the functions.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import index as faiss_index
from . import neighbours
from .layout import (
    GRID_BLOCK,
    LAYOUTS,
    PLACE_K,
    LayoutParams,
    grid_cells,
    grid_positions,
    normalise,
    place_many,
)
from .maps import Maps, describe_clusters, layout_quality

PCA_DIM = 50
PCA_CHUNK = 65_536
# Below this many points t-SNE and UMAP are not meaningful (nor stable): the map
# falls back to the first two principal components.
MIN_POINTS = 8
PARALLEL_MIN = 5000
_PLACE_CHUNK = 16_384  # images placed per FAISS search when layouts fit a sample


def sims_to_distances(sims: np.ndarray) -> np.ndarray:
    """Inner products of unit vectors -> Euclidean distances (what both libraries expect)."""
    return np.sqrt(np.clip(2.0 - 2.0 * sims, 0.0, None)).astype(np.float32)


def pca(
    vectors: np.ndarray, dim: int = PCA_DIM, seed: int = 0, fit_rows: np.ndarray | None = None
) -> np.ndarray:
    """Every row projected on the top `dim` components of `fit_rows` (default all);
    projected in chunks, so a memory-mapped million never sits in memory twice."""
    from sklearn.decomposition import PCA

    fit = np.asarray(vectors[fit_rows] if fit_rows is not None else vectors, dtype=np.float32)
    dim = min(dim, fit.shape[0], fit.shape[1])
    model = PCA(dim, svd_solver="randomized", random_state=seed).fit(fit)
    out = np.empty((len(vectors), dim), np.float32)
    for start in range(0, len(vectors), PCA_CHUNK):
        chunk = np.asarray(vectors[start : start + PCA_CHUNK], dtype=np.float32)
        out[start : start + PCA_CHUNK] = model.transform(chunk)
    return out


def fit_sample(n: int, size: int, seed: int = 0) -> np.ndarray | None:
    """The sorted rows a layout is fitted on when n exceeds `size` (seeded); else None."""
    if n <= size:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def _fallback(reduced: np.ndarray) -> np.ndarray:
    p = np.zeros((len(reduced), 2), np.float64)
    p[:, : min(2, reduced.shape[1])] = reduced[:, :2]
    return normalise(p)


def tsne(
    reduced: np.ndarray,
    knn_sims: np.ndarray,
    knn_ids: np.ndarray,
    *,
    perplexity: float = 30.0,
    seed: int = 0,
    n_jobs: int = -1,
) -> tuple[np.ndarray, dict[str, Any]]:
    """openTSNE over the shared k-NN; `reduced` (PCA) only seeds the initial layout."""
    n = len(reduced)
    if n < MIN_POINTS:
        return _fallback(reduced), {"method": "pca-fallback"}
    from openTSNE import TSNEEmbedding, affinity, initialization, nearest_neighbors

    k = min(knn_ids.shape[1], math.ceil(3 * perplexity), n - 1)
    ids = np.ascontiguousarray(knn_ids[:, :k], dtype=np.int64)
    if (ids < 0).any():  # openTSNE would write out of bounds
        raise ValueError("t-SNE needs complete k-NN lists: found -1 neighbours")
    dists = np.ascontiguousarray(sims_to_distances(knn_sims[:, :k]), dtype=np.float64)
    perp = min(perplexity, (k - 1) / 3) if k < 3 * perplexity else perplexity
    aff = affinity.PerplexityBasedNN(
        perplexity=max(perp, 1.0),
        knn_index=nearest_neighbors.PrecomputedNeighbors(ids, dists),
        n_jobs=n_jobs,
    )
    init = initialization.rescale(reduced[:, :2].astype(np.float64))
    method = "fft" if n >= 10_000 else "bh"
    emb = TSNEEmbedding(
        init, aff, negative_gradient_method=method, n_jobs=n_jobs, random_state=seed
    )
    # openTSNE's standard schedule: early exaggeration, then the free phase.
    emb = emb.optimize(250, exaggeration=12, momentum=0.5).optimize(500, momentum=0.8)
    return normalise(np.asarray(emb)), {
        "method": f"opentsne-{method}",
        "perplexity": float(perp),
        "neighbors": int(k),
    }


def umap(
    reduced: np.ndarray,
    knn_sims: np.ndarray,
    knn_ids: np.ndarray,
    *,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """umap-learn over the shared k-NN (precomputed_knn); seeded, hence single-threaded."""
    n = len(reduced)
    if n < MIN_POINTS:
        return _fallback(reduced), {"method": "pca-fallback"}
    import umap as umap_learn

    # Below n_neighbors + 1 images umap itself truncates to n - 1 (and warns): ask for that.
    nn = min(n_neighbors, n - 1, knn_ids.shape[1] + 1)
    # umap wants each point's own row first (distance 0), then its neighbours.
    ids = np.concatenate([np.arange(n, dtype=np.int64)[:, None], knn_ids[:, : nn - 1]], axis=1)
    dists = np.concatenate(
        [np.zeros((n, 1), np.float32), sims_to_distances(knn_sims[:, : nn - 1])], axis=1
    )
    dists[ids < 0] = np.inf  # padding (never there when n > nn) stays out of the graph
    model = umap_learn.UMAP(
        n_neighbors=nn,
        min_dist=min_dist,
        random_state=seed,
        precomputed_knn=(ids, dists, None),
        init="spectral" if n > 32 else "random",
    )
    with warnings.catch_warnings():
        # Both intended, so only these two are hushed: a seed overrides n_jobs (single
        # thread, reproducible) and precomputed_knn carries no search index, so umap
        # has no transform (new images are placed by neighbour weights, see place()).
        warnings.filterwarnings(
            "ignore", message=r"n_jobs value .* overridden", category=UserWarning
        )
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        points = model.fit_transform(reduced)
    return normalise(points), {"method": "umap-learn", "n_neighbors": int(nn)}


def n_clusters(n: int) -> int:
    return int(min(64, max(1, round(math.sqrt(n / 2)))))


def kmeans(reduced: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(labels (N,) int, representative image id per cluster): k-means on the PCA space.

    Clusters come from the embedding, not a layout, so a region keeps its colour
    and name when the client switches between t-SNE, UMAP and grid.
    """
    from sklearn.cluster import KMeans

    n = len(reduced)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    k = max(1, min(k, n))
    km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(reduced)
    labels = km.labels_.astype(np.int64)
    d = ((reduced - km.cluster_centers_[labels]) ** 2).sum(axis=1)
    reps = np.zeros(k, np.int64)
    for c in range(k):
        members = np.flatnonzero(labels == c)
        reps[c] = members[np.argmin(d[members])] if len(members) else -1
    return labels, reps


@dataclass(frozen=True)
class _FitSet:
    """What t-SNE and UMAP are fitted on: every image, or a sample of them with
    its own k-NN; spread() turns the fitted positions into positions for all."""

    reduced: np.ndarray
    knn_sims: np.ndarray
    knn_ids: np.ndarray
    rows: np.ndarray | None = None  # the sample's rows; None = all
    place_sims: np.ndarray | None = None  # (N - S, PLACE_K): the others' nearest
    place_ids: np.ndarray | None = None  # sample images, as sample positions

    @classmethod
    def whole(cls, reduced: np.ndarray, knn_sims: np.ndarray, knn_ids: np.ndarray) -> _FitSet:
        return cls(reduced, knn_sims, knn_ids)

    @classmethod
    def sampled(
        cls, vectors: np.ndarray, reduced: np.ndarray, rows: np.ndarray, k: int, seed: int
    ) -> _FitSet:
        """The sample's own k-NN and, for every other image, its nearest sample images:
        one index over the sample answers both."""
        sub = np.ascontiguousarray(vectors[rows], dtype=np.float32)
        index = faiss_index.build_index(sub, seed=seed)
        sims, ids = neighbours.knn_self(index, sub, k)
        others = np.setdiff1d(np.arange(len(vectors)), rows, assume_unique=True)
        place_sims = np.empty((len(others), PLACE_K), np.float32)
        place_ids = np.empty((len(others), PLACE_K), np.int64)
        for start in range(0, len(others), _PLACE_CHUNK):
            chunk = others[start : start + _PLACE_CHUNK]
            q = np.asarray(vectors[chunk], dtype=np.float32)
            s, i = neighbours.search(index, q, PLACE_K, sub)
            place_sims[start : start + len(chunk)] = s
            place_ids[start : start + len(chunk)] = i
        return cls(reduced[rows], sims, ids, rows, place_sims, place_ids)

    def spread(self, fitted: np.ndarray) -> np.ndarray:
        """Positions for every image: the sample's as fitted, the others placed."""
        if self.rows is None:
            return fitted
        assert self.place_sims is not None and self.place_ids is not None
        n = len(self.rows) + len(self.place_ids)
        out = np.empty((n, 2), np.float32)
        out[self.rows] = fitted
        placed = place_many(self.place_sims, self.place_ids, fitted)
        out[np.setdiff1d(np.arange(n), self.rows, assume_unique=True)] = np.where(
            np.isnan(placed), 0.5, placed
        )
        return out


def compute_maps(
    vectors: np.ndarray,
    knn_sims: np.ndarray,
    knn_ids: np.ndarray,
    *,
    labels: list[str | None],
    layouts: tuple[str, ...] = LAYOUTS,
    params: LayoutParams | None = None,
    n_jobs: int = -1,
    log: Callable[[str], None] | None = None,
) -> Maps:
    """All requested layouts, their quality figures, and the clusters."""
    from threadpoolctl import threadpool_limits

    # Below PARALLEL_MIN images one thread is faster: measured at 200 images on a
    # busy 2-core machine, 2 threads made PCA 40x and t-SNE 10x slower (OpenMP and
    # BLAS threads waiting at barriers for a core), for work that takes ~1 s alone.
    if len(vectors) < PARALLEL_MIN:
        with threadpool_limits(1):
            return _compute_maps(vectors, knn_sims, knn_ids, labels, layouts, params, 1, log)
    return _compute_maps(vectors, knn_sims, knn_ids, labels, layouts, params, n_jobs, log)


def _fit_layout(
    name: str, fit: _FitSet, params: LayoutParams, n_jobs: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """t-SNE or UMAP over the fit set, spread to every image: (positions, maps.json entry)."""
    t = time.perf_counter()
    if name == "tsne":
        pos, used = tsne(
            fit.reduced,
            fit.knn_sims,
            fit.knn_ids,
            perplexity=params.perplexity,
            seed=params.seed,
            n_jobs=n_jobs,
        )
        used = {"perplexity": params.perplexity, **used}
    else:
        pos, used = umap(
            fit.reduced,
            fit.knn_sims,
            fit.knn_ids,
            n_neighbors=params.n_neighbors,
            min_dist=params.min_dist,
            seed=params.seed,
        )
        used = {"min_dist": params.min_dist, **used}
    pos = fit.spread(pos)
    entry = {"params": {"seed": params.seed, **used}, "seconds": round(time.perf_counter() - t, 3)}
    return pos, entry


def _fit_grid(base: np.ndarray, source: str, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """The `source` map snapped one image a cell: (positions, maps.json entry)."""
    t = time.perf_counter()
    n = len(base)
    cells, cols, rows = grid_cells(base) if n else (np.zeros((0, 2), np.int64), 1, 1)
    entry = {
        "params": {"seed": seed, "source": source, "block": GRID_BLOCK},
        "grid": {"cols": cols, "rows": rows, "cell": 1.0 / max(cols, rows)},
        "seconds": round(time.perf_counter() - t, 3),
    }
    return grid_positions(cells, cols, rows), entry


def _compute_maps(
    vectors: np.ndarray,
    knn_sims: np.ndarray,
    knn_ids: np.ndarray,
    labels: list[str | None],
    layouts: tuple[str, ...],
    params: LayoutParams | None,
    n_jobs: int,
    log: Callable[[str], None] | None,
) -> Maps:
    params = params or LayoutParams()
    n = len(vectors)
    say = log or (lambda _msg: None)
    t0 = time.perf_counter()
    sample = fit_sample(n, params.sample, params.seed)
    reduced = (
        pca(vectors, seed=params.seed, fit_rows=sample) if n >= 2 else np.zeros((n, 2), np.float32)
    )
    info: dict[str, Any] = {
        "version": 1,
        "seed": params.seed,
        "pca": {"dim": int(reduced.shape[1]), "seconds": round(time.perf_counter() - t0, 3)},
        "layouts": {},
    }
    positions: dict[str, np.ndarray] = {}
    fit = _FitSet.whole(reduced, knn_sims, knn_ids)
    if sample is not None:
        t = time.perf_counter()
        fit = _FitSet.sampled(vectors, reduced, sample, knn_ids.shape[1], params.seed)
        info["fit"] = {
            "sample": int(len(sample)),
            "placed": int(n - len(sample)),
            "limit": params.sample,
            "seed": params.seed,
            "method": f"t-SNE, UMAP and PCA fitted on a seeded random sample; every other"
            f" image placed among its {PLACE_K} nearest sample images (layout.place)",
            "seconds": round(time.perf_counter() - t, 3),
        }
        say(f"layouts fit on a sample of {len(sample)} of {n} images; the rest are placed")

    def run(name: str) -> np.ndarray:
        pos, info["layouts"][name] = _fit_layout(name, fit, params, n_jobs)
        say(f"{name} layout of {n} images in {info['layouts'][name]['seconds']:.1f}s")
        return pos

    for name in ("tsne", "umap"):
        if name in layouts:
            positions[name] = run(name)
    if "grid" in layouts:
        # The grid is a t-SNE (or UMAP) map snapped to cells: t-SNE's even spread of
        # local clusters loses less when every point must move into a square.
        source = "tsne" if "tsne" in positions or "umap" not in positions else "umap"
        if source not in positions:
            base = run(source)
            del info["layouts"][source]
        else:
            base = positions[source]
        positions["grid"], info["layouts"]["grid"] = _fit_grid(base, source, params.seed)
    for name, pos in positions.items():
        info["layouts"][name]["quality"] = layout_quality(vectors, knn_ids, pos, seed=params.seed)
    t = time.perf_counter()
    k = n_clusters(n)
    assigned, reps = kmeans(reduced, k, seed=params.seed)
    info["clustering"] = {
        "method": "kmeans",
        "space": f"pca{reduced.shape[1]}",
        "k": int(len(reps)),
        "seed": params.seed,
        "seconds": round(time.perf_counter() - t, 3),
    }
    info["clusters"] = describe_clusters(assigned, reps, labels, positions)
    return Maps(positions, assigned.astype(np.int16), info)
