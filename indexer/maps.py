"""The map of a collection, as stored: layouts, clusters, maps.json, and the quality
figures that score a layout against the embedding. Arrays in, arrays and JSON-able
dicts out: no I/O.

Both ways of making maps end here: mapfit.compute_maps (a full build) and
update.carry_maps (placing new images on the previous maps). Quality is written
out in numpy, so the service can score a map it updated without scikit-learn.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

QUALITY_K = 10
TRUST_SAMPLE = 1000


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
