"""2-D maps of the collection: t-SNE, UMAP and a grid, plus their quality. No I/O.

Every function takes and returns arrays; seeds are parameters. Neighbours come
from the build's one FAISS k-NN pass (`index.knn_self`: self excluded, -1 padded),
so neither t-SNE nor UMAP runs a nearest-neighbour search of its own.

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
- Heavy libraries (openTSNE, umap/numba, scikit-learn) are imported inside the
  functions: the service imports this module for the query placement only.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

LAYOUTS = ("tsne", "umap", "grid")
PCA_DIM = 50
PCA_CHUNK = 65_536
# Below this many points t-SNE and UMAP are not meaningful (nor stable): the map
# falls back to the first two principal components.
MIN_POINTS = 8
GRID_BLOCK = 1024  # cells per exact assignment; see grid_cells
GRID_SLACK = 0.1  # spare grid cells, for images added later; see grid_cells
# Layouts are fitted on at most this many images; the rest are placed (maps.py).
# openTSNE and UMAP take ~6 and ~3 minutes at 100k on 2 cores and grow linearly,
# so a million images would hold a build for over an hour and many GB.
FIT_SAMPLE = 100_000


@dataclass(frozen=True)
class LayoutParams:
    perplexity: float = 30.0
    n_neighbors: int = 15
    min_dist: float = 0.1
    seed: int = 0
    sample: int = FIT_SAMPLE  # fit t-SNE/UMAP/PCA on at most this many images

    def __post_init__(self) -> None:
        if not 2 <= self.perplexity <= 100:
            raise ValueError(f"perplexity must be between 2 and 100, got {self.perplexity}")
        if not 2 <= self.n_neighbors <= 200:
            raise ValueError(f"n_neighbors must be between 2 and 200, got {self.n_neighbors}")
        if not 0 <= self.min_dist <= 1:
            raise ValueError(f"min_dist must be between 0 and 1, got {self.min_dist}")
        if self.sample < 100:
            raise ValueError(f"sample must be at least 100 images, got {self.sample}")
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be between 0 and 2**32 - 1, got {self.seed}")


def parse_layouts(spec: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """'tsne,umap' -> ('tsne', 'umap'), validated, in canonical order."""
    if spec is None:
        return LAYOUTS
    names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    names = [n for n in names if n]
    unknown = sorted(set(names) - set(LAYOUTS))
    if unknown:
        raise ValueError(f"unknown layout(s) {', '.join(unknown)}; choose from {LAYOUTS}")
    return tuple(n for n in LAYOUTS if n in names)


def knn_needed(layouts: tuple[str, ...], params: LayoutParams) -> int:
    """Neighbours per point the layouts read from the shared k-NN (30 at least,
    which the path graph uses)."""
    k = 30
    if "tsne" in layouts or "grid" in layouts:  # openTSNE reads 3 x perplexity
        k = max(k, math.ceil(3 * params.perplexity))
    if "umap" in layouts:  # UMAP's n_neighbors counts the point itself
        k = max(k, params.n_neighbors - 1)
    return k


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


def normalise(points: np.ndarray) -> np.ndarray:
    """Into [0, 1] with one scale for both axes (aspect kept), centred on the short one."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) == 0:
        return np.zeros((0, 2), np.float32)
    lo, hi = p.min(axis=0), p.max(axis=0)
    span = float((hi - lo).max())
    if span <= 0:
        return np.full((len(p), 2), 0.5, np.float32)
    out = (p - lo) / span + (1.0 - (hi - lo) / span) / 2.0
    return np.clip(out, 0.0, 1.0).astype(np.float32)


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


def grid_shape(n: int, slack: float = GRID_SLACK) -> tuple[int, int]:
    """(cols, rows) of the near-square grid for n images and `slack` spare cells."""
    cells = math.ceil(n * (1 + slack))
    cols = max(1, math.ceil(math.sqrt(cells)))
    return cols, max(1, math.ceil(cells / cols))


def grid_cells(
    points: np.ndarray, block: int = GRID_BLOCK, slack: float = GRID_SLACK
) -> tuple[np.ndarray, int, int]:
    """One grid cell per point, neighbours kept together: (cells (N, 2) [col, row], cols, rows).

    The grid has `slack` more cells than points, and the assignment leaves the
    spare ones where the layout is thin: an incremental update puts a new image
    in the free cell nearest its neighbours, so the old ones never move.
    Exact linear assignment is cubic, so points and cells are split together like
    a k-d tree - cells at a column (or row) boundary, points at the matching rank
    along that axis - until a part holds <= `block` cells, and each part is
    assigned exactly. Cost: N log N sorting plus N/block small assignments.
    """
    from scipy.optimize import linear_sum_assignment

    n = len(points)
    cols, rows = grid_shape(n, slack)
    flat = np.arange(cols * rows)
    cells = np.stack([flat % cols, flat // cols], axis=1).astype(np.float64)
    out = np.zeros((n, 2), np.int64)
    stack = [(np.arange(n), flat)]
    pts = np.asarray(points, dtype=np.float64)
    while stack:
        p_idx, c_idx = stack.pop()
        c = cells[c_idx]
        if not len(p_idx):
            continue
        if len(c_idx) <= block:
            a, b = _unit(pts[p_idx]), _unit(c)
            cost = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
            r, col = linear_sum_assignment(cost)
            out[p_idx[r]] = cells[c_idx[col]].astype(np.int64)
            continue
        span = c.max(axis=0) - c.min(axis=0)
        axis = 0 if span[0] >= span[1] else 1
        values = c[:, axis]
        # Cut cells at the column (row) boundary nearest to half, so parts stay
        # rectangular; any boundary leaves both parts non-empty (span > 0).
        bounds, counts = np.unique(values, return_counts=True)
        below = np.cumsum(counts)[:-1]
        cut = bounds[1 + int(np.argmin(np.abs(below - len(values) / 2)))]
        left = values < cut
        # Points split in the cells' proportion, each part keeping room for its own.
        m = min(int(left.sum()), round(len(p_idx) * left.sum() / len(c_idx)))
        m = max(m, len(p_idx) - int((~left).sum()))
        order = np.lexsort((pts[p_idx, 1 - axis], pts[p_idx, axis]))
        stack.append((p_idx[order[:m]], c_idx[left]))
        stack.append((p_idx[order[m:]], c_idx[~left]))
    return out, cols, rows


def _unit(p: np.ndarray) -> np.ndarray:
    lo, span = p.min(axis=0), np.ptp(p, axis=0)
    return (p - lo) / np.where(span > 0, span, 1.0)


def grid_positions(cells: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """Cell centres in [0, 1], square cells of side 1 / max(cols, rows), centred."""
    side = max(cols, rows)
    offset = np.array([(side - cols) / 2, (side - rows) / 2])
    return ((cells + 0.5 + offset) / side).astype(np.float32)


def position_cells(positions: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """Inverse of grid_positions: (N, 2) integer [col, row]."""
    side = max(cols, rows)
    offset = np.array([(side - cols) / 2, (side - rows) / 2])
    return np.floor(positions.astype(np.float64) * side - offset).astype(np.int64)


PLACE_K = 10
PLACE_TEMPERATURE = 0.03
PLACE_RADIUS = 0.1


def place(scores: np.ndarray, ids: np.ndarray, layout: np.ndarray) -> tuple[float, float] | None:
    """Where a query falls on a layout, from its FAISS top-k: a neighbour-weighted mean.

    Weights fall off exponentially with the gap to the best similarity, so an exact
    or near duplicate lands on its twin, and a novel image among its closest few.
    Neighbours further than PLACE_RADIUS from the best match are left out: two
    equally similar images on distant islands would otherwise average into the
    empty sea between them. This is what UMAP's and openTSNE's own transforms use
    as their starting point; unlike them it needs no fitted model in the service
    (no numba JIT, no pickled optimiser state) and it works for the grid as well.
    """
    xy = place_many(np.asarray(scores)[None, :], np.asarray(ids)[None, :], layout)[0]
    return None if np.isnan(xy[0]) else (float(xy[0]), float(xy[1]))


def place_many(scores: np.ndarray, ids: np.ndarray, layout: np.ndarray) -> np.ndarray:
    """place() for many queries at once: (M, K) scores and ids (-1 = none, best
    first among the valid ones) -> (M, 2) positions, NaN where a row has no neighbour."""
    scores = np.asarray(scores, np.float64)
    ids = np.asarray(ids, np.int64)
    out = np.full((len(ids), 2), np.nan)
    if ids.size == 0:
        return out
    # The valid neighbours of each row first, in their order; then the first PLACE_K.
    order = np.argsort(ids < 0, axis=1, kind="stable")[:, :PLACE_K]
    ids = np.take_along_axis(ids, order, axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    valid = ids >= 0
    pos = np.asarray(layout, np.float64)[np.maximum(ids, 0)]  # (M, K, 2)
    near = valid & (np.linalg.norm(pos - pos[:, :1], axis=2) <= PLACE_RADIUS)
    gap = np.where(near, scores - scores[:, :1], -np.inf)
    w = np.exp(gap / PLACE_TEMPERATURE)
    total = w.sum(axis=1)
    found = valid[:, 0]
    out[found] = (pos[found] * w[found, :, None]).sum(axis=1) / total[found, None]
    return out
