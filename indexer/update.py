"""Incremental updates: carry one snapshot's ids, neighbours and maps to the next.

A rebuild after a few files were added, changed or deleted should cost in
proportion to the change, not to the collection, and must not move what the user
already knows: an image keeps its catalog id (ids are never reused), and the
images already on the map keep their places. Pure functions over arrays; build()
does the I/O.

Vocabulary: `carried[r]` is, for row r of the new snapshot, the row of the same
id with the same content in the previous snapshot, or -1 where the image is new
or its content changed ("dirty" rows).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import faiss
import numpy as np

from . import neighbours
from .layout import grid_cells, grid_positions, place, position_cells
from .maps import Maps, describe_clusters, layout_quality

# Layouts are recomputed in full once the images placed since the last full
# layout pass this share of the collection: placement keeps old images still but
# cannot open room for a new region, so a map that grew a lot is refitted.
DRIFT_LIMIT = 0.25
CLUSTER_VOTES = 10  # neighbours that vote on a new image's cluster


def assign_ids(
    paths: Sequence[str], previous: Mapping[str, int], next_id: int
) -> tuple[np.ndarray, int]:
    """Catalog id per path: the previous id of the same path, else a fresh one.

    Fresh ids count up from `next_id` (one past the largest id ever handed out,
    so a deleted image's id is never given to another). Returns (ids, next_id).
    """
    ids = np.empty(len(paths), dtype=np.int64)
    for i, path in enumerate(paths):
        known = previous.get(path)
        if known is None:
            known, next_id = next_id, next_id + 1
        ids[i] = known
    return ids, next_id


def carried_rows(
    ids: np.ndarray, shas: Sequence[str], prev_ids: np.ndarray, prev_shas: Sequence[str]
) -> np.ndarray:
    """Row in the previous snapshot of each row's same id and content, else -1."""
    at = np.searchsorted(prev_ids, ids)
    at = np.minimum(at, max(len(prev_ids) - 1, 0))
    out = np.full(len(ids), -1, dtype=np.int64)
    if not len(prev_ids):
        return out
    same_id = prev_ids[at] == ids
    for r in np.flatnonzero(same_id).tolist():
        if prev_shas[int(at[r])] == shas[r]:
            out[r] = at[r]
    return out


def previous_to_new(carried: np.ndarray, prev_count: int) -> np.ndarray:
    """Row in this build of each previous row (-1 where gone or changed), plus one
    last slot, -1, so that a previous id of -1 maps to -1 as well."""
    out = np.full(prev_count + 1, -1, dtype=np.int64)
    kept = np.flatnonzero(carried >= 0)
    out[carried[kept]] = kept
    return out


def update_knn(
    index: faiss.Index,
    vectors: np.ndarray,
    carried: np.ndarray,
    prev_sims: np.ndarray,
    prev_ids: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The k-NN lists of the new rows from the previous ones: (sims, ids, recomputed).

    Unchanged rows keep their lists, merged with the best of the new rows (one
    search of the unchanged vectors against the few new ones); new rows, and rows
    that lost a neighbour to a removal or a change, get an exact search. Same
    lists as a full pass, up to ties, at a cost in proportion to the change.
    """
    n, k = len(vectors), prev_ids.shape[1]
    prev_to_new = previous_to_new(carried, len(prev_ids))
    kept = np.flatnonzero(carried >= 0)
    sims = np.full((n, k), -np.inf, dtype=np.float32)
    ids = np.full((n, k), -1, dtype=np.int64)
    lists = prev_ids[carried[kept]]
    old_ids = prev_to_new[lists]  # -1 maps through the last slot
    old_sims = prev_sims[carried[kept]].astype(np.float32, copy=False)
    gone = old_ids < 0
    old_sims[gone] = -np.inf
    # A row that lost a neighbour (removed or changed) may now have one that was
    # beyond its stored k: only a search finds it.
    lost = (lists >= 0).sum(axis=1) > (~gone).sum(axis=1)
    dirty = np.flatnonzero(carried < 0)
    if len(dirty) and len(kept):
        small = faiss.IndexFlatIP(vectors.shape[1])
        small.add(np.ascontiguousarray(vectors[dirty], dtype=np.float32))
        take = min(k, len(dirty))
        s, i = small.search(np.ascontiguousarray(vectors[kept], dtype=np.float32), take)
        # Lists are sorted best first: only a row whose best new match beats its
        # worst kept neighbour changes (usually a small share of them).
        touch = np.flatnonzero(s[:, 0] > old_sims[:, -1])
        both_s = np.concatenate([old_sims[touch], s[touch]], axis=1)
        new_ids = np.where(i[touch] >= 0, dirty[np.maximum(i[touch], 0)], -1)
        both_i = np.concatenate([old_ids[touch], new_ids], axis=1)
        best = np.argsort(-both_s, axis=1, kind="stable")[:, :k]
        old_sims[touch] = np.take_along_axis(both_s, best, axis=1)
        old_ids[touch] = np.take_along_axis(both_i, best, axis=1)
    sims[kept] = old_sims
    ids[kept] = old_ids
    short = lost | ((old_ids >= 0).sum(axis=1) < min(k, n - 1))
    redo = np.concatenate([dirty, kept[short]])
    if len(redo):
        sims[redo], ids[redo] = neighbours.knn_rows(index, vectors, redo, k)
    return sims, ids, len(redo)


def place_rows(
    positions: np.ndarray, knn_sims: np.ndarray, knn_ids: np.ndarray, dirty: np.ndarray
) -> np.ndarray:
    """Positions with each dirty row placed among its unchanged neighbours
    (layout.place: the same neighbour-weighted placement as a query's)."""
    out = positions.copy()
    for r in np.flatnonzero(dirty):
        nb = knn_ids[r]
        ok = (nb >= 0) & ~dirty[np.maximum(nb, 0)]
        xy = place(knn_sims[r][ok], nb[ok], out)
        out[r] = xy if xy is not None else (0.5, 0.5)
    return out


def place_on_grid(
    cells_pos: np.ndarray,
    knn_sims: np.ndarray,
    knn_ids: np.ndarray,
    dirty: np.ndarray,
    cols: int,
    rows: int,
) -> np.ndarray | None:
    """Grid positions with each dirty row in the free cell nearest to where its
    neighbours are; None when the grid has too few free cells (refit it)."""
    from scipy.spatial import cKDTree

    todo = np.flatnonzero(dirty)
    taken = position_cells(cells_pos[~dirty], cols, rows)
    used = np.zeros((rows, cols), dtype=bool)
    used[taken[:, 1], taken[:, 0]] = True
    free_rc = np.argwhere(~used)  # [row, col]
    if len(free_rc) < len(todo):
        return None
    out = cells_pos.copy()
    if not len(todo):
        return out
    free = np.stack([free_rc[:, 1], free_rc[:, 0]], axis=1)
    centres = grid_positions(free, cols, rows)
    wanted = place_rows(cells_pos, knn_sims, knn_ids, dirty)[todo]
    tree = cKDTree(centres)
    gone = np.zeros(len(free), dtype=bool)
    # Most confident first: the image closest to its nearest neighbour picks first.
    order = np.argsort(-knn_sims[todo, 0], kind="stable")
    for j in order:
        reach = 8
        while True:
            _, near = tree.query(wanted[j], k=min(reach, len(free)))
            near = np.atleast_1d(near)
            open_ = near[~gone[near]]
            if len(open_) or reach >= len(free):
                break
            reach *= 4
        cell = int(open_[0]) if len(open_) else int(np.flatnonzero(~gone)[0])
        gone[cell] = True
        out[todo[j]] = centres[cell]
    return out


def vote_clusters(clusters: np.ndarray, knn_ids: np.ndarray, dirty: np.ndarray) -> np.ndarray:
    """Each dirty row joins the cluster most of its nearest unchanged neighbours are in."""
    out = clusters.copy()
    for r in np.flatnonzero(dirty):
        nb = knn_ids[r]
        nb = nb[(nb >= 0) & ~dirty[np.maximum(nb, 0)]][:CLUSTER_VOTES]
        votes = Counter(int(c) for c in clusters[nb] if c >= 0)
        out[r] = votes.most_common(1)[0][0] if votes else 0
    return out


def representatives(
    vectors: np.ndarray, clusters: np.ndarray, k: int, previous: np.ndarray
) -> np.ndarray:
    """Row of each cluster's representative: the previous one where it is still
    in the cluster, else the member closest to the cluster's mean vector."""
    reps = np.full(k, -1, dtype=np.int64)
    for c in range(k):
        members = np.flatnonzero(clusters == c)
        if not len(members):
            continue
        if c < len(previous) and previous[c] >= 0 and clusters[previous[c]] == c:
            reps[c] = previous[c]
            continue
        centre = np.asarray(vectors[members], dtype=np.float32).mean(axis=0)
        reps[c] = members[int(np.argmax(np.asarray(vectors[members]) @ centre))]
    return reps


def drift(info: Mapping[str, Any], count: int, placed_now: int) -> tuple[int, int, bool]:
    """(placed since the last full layout, its size then, whether to refit now)."""
    update = info.get("update", {})
    full_count = int(update.get("full_count", count))
    placed = int(update.get("placed_since_full", 0)) + placed_now
    return placed, full_count, placed > DRIFT_LIMIT * max(full_count, 1)


def _carry_grid(
    entry: dict[str, Any],
    pos: np.ndarray,
    positions: Mapping[str, np.ndarray],
    knn_sims: np.ndarray,
    knn_ids: np.ndarray,
    dirty: np.ndarray,
) -> np.ndarray | None:
    """The grid with new images in free cells near their neighbours; refitted from
    its source map (updating `entry`) when no cells are left; None without one."""
    cols, rows = int(entry["grid"]["cols"]), int(entry["grid"]["rows"])
    grid = place_on_grid(pos, knn_sims, knn_ids, dirty, cols, rows)
    if grid is not None:
        return grid
    base = positions.get(entry["params"].get("source", "tsne"))
    if base is None:
        return None
    cells, cols, rows = grid_cells(base)
    entry["grid"] = {"cols": cols, "rows": rows, "cell": 1 / max(cols, rows)}
    entry["refitted"] = True
    return grid_positions(cells, cols, rows)


def carry_maps(
    prev_info: Mapping[str, Any],
    prev_layouts: Mapping[str, np.ndarray],
    prev_clusters: np.ndarray | None,
    *,
    ids: np.ndarray,
    carried: np.ndarray,
    vectors: np.ndarray,
    knn_sims: np.ndarray,
    knn_ids: np.ndarray,
    labels: list[str | None],
    layouts: tuple[str, ...],
    refit_on_drift: bool = True,
) -> Maps | None:
    """The previous maps with unchanged images where they were and the others
    placed among their neighbours; None when a full layout is due instead.

    A full layout is due when a requested layout or the clusters are missing, or
    the images placed since the last full layout pass DRIFT_LIMIT of it (unless
    `refit_on_drift` is off: the service places and leaves the refit to the next
    `pixscape index`). A grid with no free cells left is refitted from the t-SNE
    (or UMAP) positions: only then do old images move, and only on the grid.
    """
    n = len(vectors)
    dirty = carried < 0
    kept = np.flatnonzero(~dirty)
    placed, full_count, due = drift(prev_info, n, int(dirty.sum()))
    if prev_clusters is None or any(name not in prev_layouts for name in layouts) or not len(kept):
        return None
    if due and refit_on_drift:
        return None
    info: dict[str, Any] = json.loads(json.dumps(prev_info))  # a deep copy
    info["layouts"] = {name: info["layouts"][name] for name in layouts}
    positions: dict[str, np.ndarray] = {}
    for name in layouts:
        pos = np.full((n, 2), np.nan, dtype=np.float32)
        pos[kept] = prev_layouts[name][carried[kept]]
        if name != "grid":
            positions[name] = place_rows(pos, knn_sims, knn_ids, dirty)
            continue
        grid = _carry_grid(info["layouts"]["grid"], pos, positions, knn_sims, knn_ids, dirty)
        if grid is None:
            return None
        positions["grid"] = grid
    for name, pos in positions.items():
        info["layouts"][name]["quality"] = layout_quality(vectors, knn_ids, pos, seed=info["seed"])
    clusters = np.full(n, -1, dtype=np.int64)
    clusters[kept] = prev_clusters[carried[kept]]
    clusters = vote_clusters(clusters, knn_ids, dirty)
    k = int(info["clustering"]["k"])
    prev_reps = np.array(
        [c["representative"] for c in prev_info.get("clusters", [])], dtype=np.int64
    )
    rep_rows = np.searchsorted(ids, prev_reps)
    rep_rows = np.where(
        (rep_rows < n) & (ids[np.minimum(rep_rows, n - 1)] == prev_reps), rep_rows, -1
    )
    reps = representatives(vectors, clusters, k, rep_rows)
    info["clusters"] = describe_clusters(clusters, reps, labels, positions)
    info["update"] = {
        "mode": "placed",
        "placed": int(dirty.sum()),
        "placed_since_full": placed,
        "full_count": full_count,
        "drift_limit": DRIFT_LIMIT,
        "refit_due": due,
    }
    return Maps(positions, clusters.astype(np.int16), info)
