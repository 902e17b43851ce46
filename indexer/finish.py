"""The finishing steps of a build: ids, index, neighbours, graph, maps, atlases,
snapshot, publish.

Whatever embedded the images (the local engine, Ray), these steps turn the
embeddings into a published snapshot. Where the previous snapshot indexes the
same folder with the same model, they carry it over (indexer.update): images keep
their ids, unchanged images keep their neighbours and their places on the maps,
and only atlas sheets and thumbnails that changed are made again, so a small
change to a large collection costs little.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import numpy as np

from . import graph as path_graph
from . import index as faiss_index
from . import maps as collection_maps
from .atlas import KeepSheet, build_atlases
from .cache import CachedItem, CacheRowLost
from .layout import LayoutParams, knn_needed
from .manifest import (
    GRAPH_FILE,
    KNN_FILE,
    BuildEntry,
    CollectionEntry,
    Contents,
    GraphEntry,
    KnnEntry,
    ModelEntry,
    UpdateEntry,
)
from .scan import FileEntry, readable
from .snapshot import (
    CatalogRow,
    Snapshot,
    SnapshotError,
    current_id,
    graph_to_bytes,
    knn_to_bytes,
    open_snapshot,
    publish,
    read_knn,
    write_snapshot,
)
from .update import (
    DRIFT_LIMIT,
    assign_ids,
    carried_rows,
    carry_maps,
    previous_to_new,
    update_knn,
)

# Neighbours per image in the build's one k-NN pass (shared by layouts and the graph).
KNN_K = 30


@dataclass(frozen=True)
class FinishOptions:
    layouts: tuple[str, ...]
    layout_params: LayoutParams
    graph_k: int
    path_power: float
    relayout: bool = False  # recompute the maps in full even where they could be carried
    refit_on_drift: bool = True  # False: always place (the service has no t-SNE/UMAP)
    threads: int = 0


@dataclass(frozen=True)
class ModelInfo:
    id: str
    fingerprint: str
    input_size: int
    dim: int
    onnx_path: Path


@dataclass
class Finished:
    snapshot_dir: Path
    count: int
    placed: int  # images placed on carried maps (0 when the maps were computed in full)
    timings: dict[str, float] = field(default_factory=dict)


def previous_snapshot(data_dir: Path, folder: Path, log: Callable[[str], None]) -> Snapshot | None:
    """The live snapshot, if it indexes `folder` and opens cleanly."""
    if current_id(data_dir) is None:
        return None
    try:
        prev = open_snapshot(data_dir)
    except (SnapshotError, OSError) as exc:
        log(f"previous snapshot unusable ({exc}): ids and maps start afresh")
        return None
    if prev.manifest.collection.root != str(folder.resolve()):
        log("previous snapshot indexes another folder: ids and maps start afresh")
        return None
    return prev


def _previous_knn(prev: Snapshot, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The previous snapshot's k-NN lists (rows of that snapshot), if it has k of them."""
    if prev.manifest.knn is None or prev.manifest.knn.k != k:
        return None
    return read_knn(prev)


def _atlas_keeper(prev: Snapshot | None, changed: np.ndarray) -> KeepSheet | None:
    """Hands back the previous snapshot's sheets whose id ranges hold no change."""
    if prev is None or not prev.atlas:
        return None
    before = {
        sh["file"]: (sh["first"], sh["count"], sh["height"])
        for size in prev.atlas.get("sizes", [])
        for sh in size["sheets"]
    }
    changed = np.sort(changed)

    def keep(name: str, first: int, count: int, height: int) -> bytes | None:
        if before.get(name) != (first, count, height):
            return None
        at = int(np.searchsorted(changed, first))
        if at < len(changed) and changed[at] < first + count:
            return None
        return (prev.path / name).read_bytes()

    return keep


def _carried_edges(
    prev: Snapshot, carried: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The previous graph's edges between images still here, in this build's rows:
    its joining links let an update skip the search that found them."""
    if prev.graph is None:
        return None
    prev_to_new = previous_to_new(carried, prev.count)
    edges = prev.graph.tocoo()
    a, b = prev_to_new[edges.row], prev_to_new[edges.col]
    ok = (a >= 0) & (b >= 0)
    return a[ok], b[ok], edges.data[ok]


def _copy_rows(dst: np.ndarray, src: np.ndarray, src_row: np.ndarray) -> None:
    """dst[r] = src[src_row[r]] wherever src_row[r] >= 0, by runs of consecutive
    rows: slices of a memory-mapped `src` copy at memory speed, where a fancy
    index over 100k rows costs seconds."""
    rows = np.flatnonzero(src_row >= 0)
    if not len(rows):
        return
    cut = np.flatnonzero((np.diff(rows) != 1) | (np.diff(src_row[rows]) != 1)) + 1
    for run in np.split(rows, cut):
        first, last = int(run[0]), int(run[-1]) + 1
        start = int(src_row[first])
        dst[first:last] = src[start : start + last - first]


class _Thumbnails(Sequence[bytes]):
    """Each row's thumbnail, read when asked: the previous snapshot's file for an
    unchanged image, else the cache's. An update reads only the thumbnails it has
    to (new images, and the images of atlas sheets that changed)."""

    def __init__(
        self,
        ids: np.ndarray,
        shas: list[str],
        carried: np.ndarray,
        prev: Snapshot | None,
        fresh: dict[str, CachedItem],
        fetch: Callable[[list[str]], dict[str, CachedItem]],
    ) -> None:
        self.ids, self.shas, self.carried = ids, shas, carried
        self.prev, self.fresh, self.fetch = prev, fresh, fetch

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, row: int) -> bytes: ...
    @overload
    def __getitem__(self, row: slice) -> list[bytes]: ...
    def __getitem__(self, row: int | slice) -> bytes | list[bytes]:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        sha = self.shas[row]
        if sha in self.fresh:
            return self.fresh[sha].thumbnail
        if self.prev is not None and self.carried[row] >= 0:
            try:
                return self.prev.thumbnail_path(int(self.ids[row])).read_bytes()
            except OSError:
                pass  # gone from the old snapshot: the cache has it
        return self.fetch([sha])[sha].thumbnail


def finish(
    data_dir: Path,
    folder: Path,
    *,
    kept: list[FileEntry],
    fetch: Callable[[list[str]], dict[str, CachedItem]],
    model: ModelInfo,
    options: FinishOptions,
    files_seen: int,
    build_info: dict[str, Any],
    log: Callable[[str], None],
    inputs: dict[str, Any] | None = None,
) -> Finished:
    """Write and publish the snapshot of `kept` (files with embeddings, any order).

    `fetch` looks embeddings up by content hash (EmbeddingCache.get_many); it is
    asked only for what the previous snapshot cannot supply. `inputs` goes into
    the manifest as it is: build() records there the fingerprint of the files and
    options it was given, to know the next time that nothing changed.
    """
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = round(now - clock, 3)
        clock = now

    prev = previous_snapshot(data_dir, folder, log)
    lap("previous")
    next_id = 0
    previous_ids: dict[str, int] = {}
    if prev is not None:
        previous_ids = {r.path: r.id for r in prev.rows}
        # Snapshots written before ids were kept: the next after the largest.
        next_id = prev.manifest.next_id or int(prev.ids.max(initial=-1)) + 1
    ids, next_id = assign_ids([e.rel_path for e in kept], previous_ids, next_id)
    order = np.argsort(ids, kind="stable")
    kept, ids = [kept[i] for i in order], ids[order]
    n, dim = len(kept), model.dim
    shas = [e.sha256 for e in kept]
    same_model = (
        prev is not None
        and prev.manifest.model.fingerprint == model.fingerprint
        and prev.vectors.shape[1] == dim
    )
    carried = np.full(n, -1, dtype=np.int64)
    if prev is not None and same_model:
        carried = carried_rows(ids, shas, prev.ids, [r.sha256 for r in prev.rows])
    # Unchanged images come from the previous snapshot (its memory-mapped vectors,
    # its catalog, its thumbnail files); only new or changed ones from the cache.
    wanted = sorted({shas[r] for r in np.flatnonzero(carried < 0).tolist()})
    fresh = fetch(wanted)
    if len(fresh) < len(wanted):
        lost = next(e.rel_path for e in kept if e.sha256 in set(wanted) - set(fresh))
        raise CacheRowLost(
            f"the embedding cache's row for {readable(lost)} was unusable and has been dropped:"
            " run the build again to embed it anew"
        )
    vectors = np.empty((n, dim), np.float32)
    if prev is not None:
        _copy_rows(vectors, prev.vectors, carried)
    rows: list[CatalogRow] = []
    for r, (image_id, e) in enumerate(zip(ids.tolist(), kept, strict=True)):
        if carried[r] >= 0 and prev is not None:
            was = prev.rows[int(carried[r])]
            width, height, fmt = was.width, was.height, was.format
        else:
            item = fresh[e.sha256]
            width, height, fmt = item.width, item.height, item.format
            vectors[r] = item.vector
        rows.append(CatalogRow(image_id, e.rel_path, e.sha256, e.size, width, height, fmt, e.label))
    thumbnails = _Thumbnails(ids, shas, carried, prev, fresh, fetch)
    lap("catalog")

    index, index_entry = faiss_index.build_with_manifest(
        vectors,
        seed=options.layout_params.seed,
        trained=(prev.index, prev.manifest.index or {}) if prev and same_model else None,
    )
    lap("index")
    k = max(KNN_K, knn_needed(options.layouts, options.layout_params))
    prev_knn = _previous_knn(prev, k) if prev is not None and same_model else None
    if prev_knn is not None:
        knn_sims, knn_ids, recomputed = update_knn(index, vectors, carried, *prev_knn)
    else:
        knn_sims, knn_ids = faiss_index.knn_self(index, vectors, k)
        recomputed = n
    lap("knn")

    graph, graph_info = path_graph.build_graph(
        vectors,
        knn_sims,
        knn_ids,
        k=options.graph_k,
        canonical=path_graph.canonical_ids([r.sha256 for r in rows]),
        hints=_carried_edges(prev, carried) if prev is not None and same_model else None,
    )
    lap("graph")
    log(
        f"path graph: {graph_info.edges} edges, {graph_info.components_before} components"
        f" joined by {graph_info.join_edges} edges in {timings['graph']:.1f}s"
    )

    labels = [r.label for r in rows]
    maps = None
    if prev is not None and same_model and not options.relayout and prev.layouts:
        maps = carry_maps(
            prev.maps,
            prev.layouts,
            prev.clusters,
            ids=ids,
            carried=carried,
            vectors=vectors,
            knn_sims=knn_sims,
            knn_ids=knn_ids,
            labels=labels,
            layouts=options.layouts,
            refit_on_drift=options.refit_on_drift,
        )
    if maps is None:
        maps = collection_maps.compute_maps(
            vectors,
            knn_sims,
            knn_ids,
            labels=labels,
            layouts=options.layouts,
            params=options.layout_params,
            n_jobs=options.threads or -1,
            log=log,
        )
        maps.info["update"] = {
            "mode": "full",
            "placed": 0,
            "placed_since_full": 0,
            "full_count": n,
            "drift_limit": DRIFT_LIMIT,
            "refit_due": False,
        }
        placed = 0
    else:
        placed = int(maps.info["update"]["placed"])
        log(f"maps carried over: {placed} new or changed images placed among their neighbours")
    for cluster in maps.info["clusters"]:  # rows -> catalog ids, as clients see them
        rep = int(cluster["representative"])
        cluster["representative"] = int(ids[rep]) if rep >= 0 else -1
    lap("maps")

    gone = np.setdiff1d(prev.ids, ids) if prev is not None else np.zeros(0, np.int64)
    changed = np.concatenate([ids[carried < 0], gone])
    atlas_files, atlas_index = build_atlases(
        ids.tolist(),
        lambda image_id: thumbnails[int(np.searchsorted(ids, image_id))],
        keep=_atlas_keeper(prev, changed),
    )
    lap("atlas")

    extra_files: dict[str, bytes] = {
        GRAPH_FILE: graph_to_bytes(graph),
        KNN_FILE: knn_to_bytes(knn_sims, knn_ids),
        **maps.files(),
        **atlas_files,
    }
    contents = Contents(
        model=ModelEntry(
            id=model.id, fingerprint=model.fingerprint, input_size=model.input_size, dim=dim
        ),
        index_type=index_entry["type"],
        index=index_entry,
        next_id=next_id,
        collection=CollectionEntry(root=str(folder.resolve()), files_seen=files_seen),
        inputs=dict(inputs or {}),
        layouts=tuple(maps.layouts),
        maps=collection_maps.manifest_entry(maps, atlas_index),
        knn=KnnEntry(k=k, recomputed_rows=int(recomputed)),
        graph=GraphEntry(
            k=graph_info.k,
            power=options.path_power,
            nodes=graph_info.nodes,
            edges=graph_info.edges,
            components_before=graph_info.components_before,
            components_joined_by=graph_info.join_edges,
            seconds=timings["graph"],
        ),
        update=UpdateEntry(
            previous=prev.id if prev is not None else None,
            kept=int((carried >= 0).sum()),
            new_or_changed=int((carried < 0).sum()),
            removed=int(len(gone)),
        ),
        build=BuildEntry(
            **build_info,
            maps_seconds=timings["maps"],
            atlas_seconds=timings["atlas"],
            knn_seconds=timings["knn"],
        ),
    )
    snap_dir = write_snapshot(
        data_dir,
        rows=rows,
        vectors=vectors,
        index_bytes=faiss_index.to_bytes(index),
        model_path=model.onnx_path,
        thumbnails=thumbnails,
        contents=contents,
        extra_files=extra_files,
        link_thumbs_from=prev.path / "thumbs" if prev is not None else None,
        unchanged_thumbs={int(i) for i in ids[carried >= 0]},
    )
    lap("write")
    publish(data_dir, snap_dir)
    lap("publish")
    return Finished(snap_dir, n, placed, timings)
