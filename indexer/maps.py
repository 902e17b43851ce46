"""The map of a collection: its layouts, their quality figures and its clusters.

compute_maps() is what build() calls; it runs the layouts of indexer/layout.py over
the build's one k-NN, scores each against the embedding, and groups the images
into regions. Arrays in, arrays and a JSON-able dict out: no I/O.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import index as faiss_index
from .layout import (
    GRID_BLOCK,
    LAYOUTS,
    PLACE_K,
    LayoutParams,
    fit_sample,
    grid_cells,
    grid_positions,
    pca,
    place_many,
    tsne,
    umap,
)

QUALITY_K = 10
TRUST_SAMPLE = 1000
PARALLEL_MIN = 5000
_PLACE_CHUNK = 16_384  # images placed per FAISS search when layouts fit a sample


def trustworthiness(
    vectors: np.ndarray,
    layout: np.ndarray,
    k: int = QUALITY_K,
    sample: int = TRUST_SAMPLE,
    seed: int = 0,
) -> float | None:
    """Trustworthiness (Venna and Kaski; as scikit-learn defines it, Euclidean) of
    the map on a seeded random sample of points.

    Written out in numpy so the service, which has no scikit-learn, can score a
    map it updated; tests check it against sklearn.manifold.trustworthiness.
    """
    n = len(layout)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, size=min(n, sample), replace=False))
    m = len(idx)
    k = min(k, (m - 1) // 2 - 1)
    if k < 1:
        return None
    x = np.asarray(vectors[idx], dtype=np.float64)
    sq = (x * x).sum(axis=1)
    dist_x = sq[:, None] + sq[None, :] - 2 * x @ x.T
    np.fill_diagonal(dist_x, np.inf)
    y = np.asarray(layout[idx], dtype=np.float64)
    dist_y = ((y[:, None, :] - y[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(dist_y, np.inf)
    rank = np.empty((m, m), dtype=np.int64)  # rank[i, j]: j's place among i's neighbours
    rank[np.arange(m)[:, None], np.argsort(dist_x, axis=1)] = np.arange(1, m + 1)
    near_y = np.argsort(dist_y, axis=1)[:, :k]
    excess = rank[np.arange(m)[:, None], near_y] - k
    penalty = excess[excess > 0].sum()
    return float(1.0 - penalty * 2.0 / (m * k * (2.0 * m - 3.0 * k - 1.0)))


def knn_preservation(knn_ids: np.ndarray, layout: np.ndarray, k: int = QUALITY_K) -> float | None:
    """Mean share of each point's k nearest (embedding) among its k nearest on the map."""
    from scipy.spatial import cKDTree

    n = len(layout)
    k = min(k, n - 1, knn_ids.shape[1])
    if k < 1:
        return None
    _, near = cKDTree(layout).query(layout, k=k + 1)
    # Drop the point itself (first unless an exact tie put another point first).
    mine = np.arange(n)[:, None]
    map_nn = np.where(near[:, :1] == mine, near[:, 1:], near[:, :k])
    hits = (map_nn[:, :, None] == knn_ids[:, None, :k]).any(axis=2).sum(axis=1)
    return float(hits.mean() / k)


def layout_quality(
    vectors: np.ndarray, knn_ids: np.ndarray, pos: np.ndarray, seed: int = 0
) -> dict[str, Any]:
    """A layout's quality figures, as the manifest and /api/maps give them."""
    return {
        "trustworthiness": _round(trustworthiness(vectors, pos, seed=seed)),
        "knn_preservation": _round(knn_preservation(knn_ids, pos)),
        "k": QUALITY_K,
        "sample": min(len(pos), TRUST_SAMPLE),
    }


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
class Maps:
    """Everything the map needs, ready to store: positions, clusters, and maps.json."""

    layouts: dict[str, np.ndarray]  # name -> (N, 2) float32 in [0, 1]
    clusters: np.ndarray  # (N,) int16 cluster per image
    info: dict[str, Any]  # maps.json: params, quality, timings, grid shape, clusters

    def files(self) -> dict[str, bytes]:
        """Snapshot-relative name -> bytes (serialised in memory; the caller writes)."""

        def npy(a: np.ndarray) -> bytes:
            buf = io.BytesIO()
            np.save(buf, a)
            return buf.getvalue()

        out = {f"layouts/{name}.npy": npy(pos) for name, pos in self.layouts.items()}
        out["clusters.npy"] = npy(self.clusters)
        out["maps.json"] = json.dumps(self.info, indent=1, sort_keys=True).encode()
        return out


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
        sims, ids = faiss_index.knn_self(index, sub, k)
        others = np.setdiff1d(np.arange(len(vectors)), rows, assume_unique=True)
        place_sims = np.empty((len(others), PLACE_K), np.float32)
        place_ids = np.empty((len(others), PLACE_K), np.int64)
        for start in range(0, len(others), _PLACE_CHUNK):
            chunk = others[start : start + _PLACE_CHUNK]
            q = np.asarray(vectors[chunk], dtype=np.float32)
            s, i = faiss_index.search(index, q, PLACE_K, sub)
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
        info["layouts"][name] = {
            "params": {"seed": params.seed, **used},
            "seconds": round(time.perf_counter() - t, 3),
        }
        say(f"{name} layout of {n} images in {time.perf_counter() - t:.1f}s")
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
        t = time.perf_counter()
        cells, cols, rows = grid_cells(base) if n else (np.zeros((0, 2), np.int64), 1, 1)
        positions["grid"] = grid_positions(cells, cols, rows)
        info["layouts"]["grid"] = {
            "params": {"seed": params.seed, "source": source, "block": GRID_BLOCK},
            "grid": {"cols": cols, "rows": rows, "cell": 1.0 / max(cols, rows)},
            "seconds": round(time.perf_counter() - t, 3),
        }
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


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def describe_clusters(
    assigned: np.ndarray,
    reps: np.ndarray,
    labels: list[str | None],
    positions: dict[str, np.ndarray],
) -> list[dict[str, Any]]:
    out = []
    for c, rep in enumerate(reps):
        members = np.flatnonzero(assigned == c)
        named = Counter(labels[i] for i in members if labels[i] is not None)
        label, votes = named.most_common(1)[0] if named else (None, 0)
        out.append(
            {
                "id": c,
                "size": int(len(members)),
                "representative": int(rep),
                "label": label,
                "label_share": round(votes / len(members), 3) if len(members) else 0.0,
                # Where to write the region's name: the median member on each map.
                "centers": {
                    name: [round(float(v), 5) for v in np.median(pos[members], axis=0)]
                    for name, pos in positions.items()
                    if len(members)
                },
            }
        )
    return out


def manifest_entry(maps: Maps, atlas_index: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's "maps" key: what was computed, with which seeds, how good."""
    entry: dict[str, Any] = {
        name: {k: v for k, v in info.items() if k in ("params", "quality", "seconds", "grid")}
        for name, info in maps.info["layouts"].items()
    }
    entry["seed"] = maps.info["seed"]
    entry["fit"] = maps.info.get(
        "fit", {"sample": len(maps.clusters), "placed": 0, "method": "fitted on every image"}
    )
    entry["clustering"] = maps.info["clustering"]
    entry["files"] = sorted(
        [*(f"layouts/{n}.npy" for n in maps.layouts), "clusters.npy", "maps.json"]
    )
    if atlas_index is not None:
        entry["atlas"] = {
            "format": atlas_index["format"],
            "cells": [s["cell"] for s in atlas_index["sizes"]],
            "sheets": sum(len(s["sheets"]) for s in atlas_index["sizes"]),
            "bytes": sum(x["bytes"] for s in atlas_index["sizes"] for x in s["sheets"]),
        }
    return entry
