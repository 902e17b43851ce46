"""The finishing stages of a build: catalog, index, neighbours, graph, maps,
atlases, snapshot, publish.

Whatever embedded the images (the local engine, Ray), these stages turn the
embeddings into a published snapshot. Where the previous snapshot indexes the
same folder with the same model (its `carry`), they take from it (indexer.carry,
indexer.update): images keep their ids, unchanged images keep their neighbours
and their places on the maps, and only atlas sheets and thumbnails that changed
are made again, so a small change to a large collection costs little.

Each stage is a function of what it needs, returning what it made; `finish` is
their sequence. The maps are fitted in full (indexer.mapfit, the layout
libraries) only in a full build, never with `place_only`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import graph as path_graph
from . import index as faiss_index
from . import maps as collection_maps
from . import neighbours
from .atlas import build_atlases
from .cache import CachedItem, CacheRowLost
from .carry import (
    Thumbnails,
    atlas_keeper,
    carried_edges,
    copy_rows,
    previous_knn,
    previous_snapshot,
)
from .catalog import CatalogRow
from .config import KNN_K
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
from .maps import Maps
from .scan import FileEntry, readable
from .snapshot import Snapshot, graph_to_bytes, knn_to_bytes, publish, write_snapshot
from .update import DRIFT_LIMIT, assign_ids, carried_rows, carry_maps, update_knn


class RelayoutDue(RuntimeError):
    """A place-only build found maps it cannot place new images on: a full build
    (`pixscape index`) must lay them out again."""


@dataclass(frozen=True)
class FinishOptions:
    layouts: tuple[str, ...]
    layout_params: LayoutParams
    graph_k: int
    path_power: float
    relayout: bool = False  # recompute the maps in full even where they could be carried
    # Never fit maps (no refit on drift, no full layout): for callers without the
    # layout libraries, the service's admin routes. Maps that cannot be carried
    # raise RelayoutDue instead. (BuildConfig checks the two do not meet.)
    place_only: bool = False
    threads: int = 0


@dataclass(frozen=True)
class ModelInfo:
    id: str
    fingerprint: str
    input_size: int
    dim: int
    onnx_path: Path

    def entry(self) -> ModelEntry:
        """The manifest's model entry."""
        return ModelEntry(
            id=self.id, fingerprint=self.fingerprint, input_size=self.input_size, dim=self.dim
        )


@dataclass
class Finished:
    snapshot_dir: Path
    count: int
    placed: int  # images placed on carried maps (0 when the maps were computed in full)
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Catalog:
    """The new snapshot's images in id order, and where each one's data comes from."""

    ids: np.ndarray  # row -> catalog id, increasing
    next_id: int
    rows: list[CatalogRow]
    vectors: np.ndarray  # (N, D) float32
    carried: np.ndarray  # row -> the carry's row of the same unchanged image, or -1
    thumbnails: Thumbnails


@dataclass(frozen=True)
class Neighbours:
    sims: np.ndarray  # (N, k) inner products, best first
    ids: np.ndarray  # (N, k) rows, self excluded, -1 padded
    k: int
    recomputed: int  # rows searched afresh (all of them in a full build)


class _Laps:
    """Seconds per stage, in the order they ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.monotonic()

    def __call__(self, name: str) -> float:
        now = time.monotonic()
        self.seconds[name] = round(now - self._clock, 3)
        self._clock = now
        return self.seconds[name]


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
    asked only for what the previous snapshot cannot supply. `build_info` is the
    build's report (manifest.BuildEntry less the finishing stages' seconds);
    `inputs` goes into the manifest as it is: build() records there the
    fingerprint of the files and options it was given, to know the next time
    that nothing changed.
    """
    lap = _Laps()
    prev = previous_snapshot(data_dir, folder, log)
    carry = prev if prev is not None and _same_model(prev, model) else None
    lap("previous")
    cat = catalog_stage(kept, prev, carry, model.dim, fetch)
    lap("catalog")
    trained = (carry.index, carry.manifest.index or {}) if carry is not None else None
    index, index_entry = faiss_index.build_with_manifest(
        cat.vectors, seed=options.layout_params.seed, trained=trained
    )
    lap("index")
    knn = neighbours_stage(index, cat, carry, options)
    lap("knn")
    graph, graph_info = graph_stage(cat, knn, carry, options.graph_k)
    log(
        f"path graph: {graph_info.edges} edges, {graph_info.components_before} components"
        f" joined by {graph_info.join_edges} edges in {lap('graph'):.1f}s"
    )
    maps = maps_stage(cat, knn, carry, options, log)
    lap("maps")
    gone = np.setdiff1d(prev.ids, cat.ids) if prev is not None else np.zeros(0, np.int64)
    atlas_files, atlas_index = build_atlases(
        cat.ids.tolist(),
        lambda image_id: cat.thumbnails[int(np.searchsorted(cat.ids, image_id))],
        keep=atlas_keeper(prev, np.concatenate([cat.ids[cat.carried < 0], gone])),
    )
    lap("atlas")
    contents = Contents(
        model=model.entry(),
        index_type=index_entry["type"],
        index=index_entry,
        next_id=cat.next_id,
        collection=CollectionEntry(root=str(folder.resolve()), files_seen=files_seen),
        inputs=dict(inputs or {}),
        layouts=tuple(maps.layouts) if maps is not None else (),
        maps=collection_maps.manifest_entry(maps, atlas_index) if maps is not None else None,
        knn=KnnEntry(k=knn.k, recomputed_rows=knn.recomputed),
        graph=_graph_entry(graph_info, options.path_power, lap.seconds["graph"]),
        update=UpdateEntry(
            previous=prev.id if prev is not None else None,
            kept=int((cat.carried >= 0).sum()),
            new_or_changed=int((cat.carried < 0).sum()),
            removed=len(gone),
        ),
        build=BuildEntry(
            **build_info,
            **{f"{name}_seconds": lap.seconds[name] for name in ("knn", "maps", "atlas")},
        ),
    )
    snap_dir = write_snapshot(
        data_dir,
        rows=cat.rows,
        vectors=cat.vectors,
        index_bytes=faiss_index.to_bytes(index),
        model_path=model.onnx_path,
        thumbnails=cat.thumbnails,
        contents=contents,
        extra_files={
            GRAPH_FILE: graph_to_bytes(graph),
            KNN_FILE: knn_to_bytes(knn.sims, knn.ids),
            **(maps.files() if maps is not None else {}),
            **atlas_files,
        },
        link_thumbs_from=prev.path / "thumbs" if prev is not None else None,
        unchanged_thumbs={int(i) for i in cat.ids[cat.carried >= 0]},
    )
    lap("write")
    publish(data_dir, snap_dir)
    lap("publish")
    placed = int(maps.info["update"]["placed"]) if maps is not None else 0
    return Finished(snap_dir, len(cat.rows), placed, lap.seconds)


def _graph_entry(info: path_graph.GraphInfo, power: float, seconds: float) -> GraphEntry:
    return GraphEntry(
        k=info.k,
        power=power,
        nodes=info.nodes,
        edges=info.edges,
        components_before=info.components_before,
        components_joined_by=info.join_edges,
        seconds=seconds,
    )


def _same_model(prev: Snapshot, model: ModelInfo) -> bool:
    """Whether the previous snapshot's vectors are this model's: then they carry."""
    return (
        prev.manifest.model.fingerprint == model.fingerprint and prev.vectors.shape[1] == model.dim
    )


# ---------------------------------------------------------------- stages


def catalog_stage(
    kept: list[FileEntry],
    prev: Snapshot | None,
    carry: Snapshot | None,
    dim: int,
    fetch: Callable[[list[str]], dict[str, CachedItem]],
) -> Catalog:
    """Ids (kept across snapshots by path), rows and vectors, in id order.

    Unchanged images come from the carry (its memory-mapped vectors, its catalog,
    its thumbnail files); only new or changed ones from the cache.
    """
    previous_ids: dict[str, int] = {}
    next_id = 0
    if prev is not None:
        previous_ids = {r.path: r.id for r in prev.rows}
        # Snapshots written before ids were kept: the next after the largest.
        next_id = prev.manifest.next_id or int(prev.ids.max(initial=-1)) + 1
    ids, next_id = assign_ids([e.rel_path for e in kept], previous_ids, next_id)
    order = np.argsort(ids, kind="stable")
    kept, ids = [kept[i] for i in order], ids[order]
    shas = [e.sha256 for e in kept]
    carried = np.full(len(kept), -1, dtype=np.int64)
    if carry is not None:
        carried = carried_rows(ids, shas, carry.ids, [r.sha256 for r in carry.rows])
    wanted = sorted({shas[r] for r in np.flatnonzero(carried < 0).tolist()})
    fresh = fetch(wanted)
    if len(fresh) < len(wanted):
        lost = next(e.rel_path for e in kept if e.sha256 in set(wanted) - set(fresh))
        raise CacheRowLost(
            f"the embedding cache's row for {readable(lost)} was unusable and has been dropped:"
            " run the build again to embed it anew"
        )
    vectors = np.empty((len(kept), dim), np.float32)
    if carry is not None:
        copy_rows(vectors, carry.vectors, carried)
    rows: list[CatalogRow] = []
    for r, (image_id, e) in enumerate(zip(ids.tolist(), kept, strict=True)):
        if carry is not None and carried[r] >= 0:
            was = carry.rows[int(carried[r])]
            width, height, fmt = was.width, was.height, was.format
        else:
            item = fresh[e.sha256]
            width, height, fmt = item.width, item.height, item.format
            vectors[r] = item.vector
        rows.append(CatalogRow(image_id, e.rel_path, e.sha256, e.size, width, height, fmt, e.label))
    thumbnails = Thumbnails(ids, shas, carried, carry, fresh, fetch)
    return Catalog(ids, next_id, rows, vectors, carried, thumbnails)


def neighbours_stage(
    index: Any, cat: Catalog, carry: Snapshot | None, options: FinishOptions
) -> Neighbours:
    """The build's one k-NN pass: updated from the carry's lists where it has them."""
    k = max(KNN_K, knn_needed(options.layouts, options.layout_params))
    before = previous_knn(carry, k) if carry is not None else None
    if before is not None:
        sims, ids, recomputed = update_knn(index, cat.vectors, cat.carried, *before)
        return Neighbours(sims, ids, k, int(recomputed))
    sims, ids = neighbours.knn_self(index, cat.vectors, k)
    return Neighbours(sims, ids, k, len(cat.rows))


def graph_stage(
    cat: Catalog, knn: Neighbours, carry: Snapshot | None, graph_k: int
) -> tuple[Any, path_graph.GraphInfo]:
    """The path graph; the carry's joining edges spare the search that found them."""
    return path_graph.build_graph(
        cat.vectors,
        knn.sims,
        knn.ids,
        k=graph_k,
        canonical=path_graph.canonical_ids([r.sha256 for r in cat.rows]),
        hints=carried_edges(carry, cat.carried) if carry is not None else None,
    )


def maps_stage(
    cat: Catalog,
    knn: Neighbours,
    carry: Snapshot | None,
    options: FinishOptions,
    log: Callable[[str], None],
) -> Maps | None:
    """The carry's maps with new images placed, else maps fitted in full; None
    when a place-only build has no maps to place on."""
    labels = [r.label for r in cat.rows]
    if carry is not None and carry.layouts and not options.relayout:
        maps = carry_maps(
            carry.maps,
            carry.layouts,
            carry.clusters,
            ids=cat.ids,
            carried=cat.carried,
            vectors=cat.vectors,
            knn_sims=knn.sims,
            knn_ids=knn.ids,
            labels=labels,
            layouts=options.layouts,
            refit_on_drift=not options.place_only,
        )
        if maps is not None:
            placed = maps.info["update"]["placed"]
            log(f"maps carried over: {placed} new or changed images placed among their neighbours")
            return _with_catalog_ids(maps, cat.ids)
    if options.place_only:
        if carry is None or not carry.layouts:
            log("no maps to place images on: `pixscape index` lays them out")
            return None
        raise RelayoutDue(
            "the maps cannot take these images by placing them (a requested layout or the"
            " clusters are missing, or no image is left unchanged):"
            " run `pixscape index` to lay them out in full"
        )
    from .mapfit import compute_maps  # the layout libraries: only a full build fits

    maps = compute_maps(
        cat.vectors,
        knn.sims,
        knn.ids,
        labels=labels,
        layouts=options.layouts,
        params=options.layout_params,
        n_jobs=options.threads or -1,
        log=log,
    )
    full = {"mode": "full", "placed": 0, "placed_since_full": 0, "full_count": len(cat.rows)}
    update = {**full, "drift_limit": DRIFT_LIMIT, "refit_due": False}
    return _with_catalog_ids(replace(maps, info={**maps.info, "update": update}), cat.ids)


def _with_catalog_ids(maps: Maps, ids: np.ndarray) -> Maps:
    """Cluster representatives as catalog ids (what clients see), not rows."""
    clusters = [
        {**c, "representative": int(ids[c["representative"]]) if c["representative"] >= 0 else -1}
        for c in maps.info["clusters"]
    ]
    return replace(maps, info={**maps.info, "clusters": clusters})
