"""Map options and the arithmetic of placing: no fitting, no heavy library. No I/O.

What a build asks of its maps (LayoutParams, which layouts, how many neighbours
they need), the grid (its shape, the exact assignment of points to cells, cells
and positions), and place(): where an image goes among its nearest neighbours'
positions. The service places uploads and added images with these; only a full
build fits maps, in indexer/mapfit.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LAYOUTS = ("tsne", "umap", "grid")
GRID_BLOCK = 1024  # cells per exact assignment; see grid_cells
GRID_SLACK = 0.1  # spare grid cells, for images added later; see grid_cells
# Layouts are fitted on at most this many images; the rest are placed (mapfit.py).
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
