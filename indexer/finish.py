"""Finishing a build: catalog, index, neighbours, graph, maps, atlases, snapshot,
publish, in that order.

Whatever embedded the images (the local engine, Ray), these stages turn the
embeddings into a published snapshot. Where the previous snapshot indexes the
same folder with the same model (its `carry`), they take from it (indexer.carry,
indexer.update): images keep their ids, unchanged images keep their neighbours
and their places on the maps, and only atlas sheets and thumbnails that changed
are made again, so a small change to a large collection costs little.

Each stage (indexer.stages) is a function of what it needs, returning what it
made; `finish` is their sequence and writes the manifest's contents. The maps
are fitted in full (indexer.mapfit, the layout libraries) only in a full build,
never with `place_only`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import graph as path_graph
from . import index as faiss_index
from . import maps as collection_maps
from .cache import CachedItem
from .carry import (
    previous_snapshot,
)
from .concept_scores import TOP_K
from .config import BuildConfig
from .manifest import (
    CONCEPT_CLASSES_FILE,
    CONCEPT_PROBS_FILE,
    GRAPH_FILE,
    KNN_FILE,
    BuildEntry,
    CollectionEntry,
    ConceptsEntry,
    Contents,
    GraphEntry,
    KnnEntry,
    UpdateEntry,
)
from .scan import FileEntry
from .snapshot import Snapshot, graph_to_bytes, knn_to_bytes, npy_bytes, publish
from .stages import (
    ModelInfo,
    atlas_stage,
    catalog_stage,
    graph_stage,
    maps_stage,
    neighbours_stage,
    write_stage,
)


@dataclass
class Finished:
    snapshot_dir: Path
    count: int
    placed: int  # images placed on carried maps (0 when the maps were computed in full)
    timings: dict[str, float] = field(default_factory=dict)


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
    config: BuildConfig,
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
    cat = catalog_stage(kept, prev, carry, model, fetch)
    lap("catalog")
    trained = (carry.index, carry.manifest.index or {}) if carry is not None else None
    index, index_entry = faiss_index.build_with_manifest(
        cat.vectors, seed=config.layout_params.seed, trained=trained
    )
    lap("index")
    knn = neighbours_stage(index, cat, carry, config)
    lap("knn")
    graph, graph_info = graph_stage(cat, knn, carry, config.graph_k)
    log(
        f"path graph: {graph_info.edges} edges, {graph_info.components_before} components"
        f" joined by {graph_info.join_edges} edges in {lap('graph'):.1f}s"
    )
    maps = maps_stage(cat, knn, carry, config, log)
    lap("maps")
    gone = np.setdiff1d(prev.ids, cat.ids) if prev is not None else np.zeros(0, np.int64)
    atlas_files, atlas_index = atlas_stage(cat, prev, gone)
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
        graph=_graph_entry(graph_info, config.path_power, lap.seconds["graph"]),
        concepts=_concepts_entry(model),
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
    extra_files = {
        GRAPH_FILE: graph_to_bytes(graph),
        KNN_FILE: knn_to_bytes(knn.sims, knn.ids),
        **(maps.files() if maps is not None else {}),
        **atlas_files,
    }
    if cat.concepts is not None:
        extra_files[CONCEPT_CLASSES_FILE] = npy_bytes(cat.concepts.classes)
        extra_files[CONCEPT_PROBS_FILE] = npy_bytes(cat.concepts.probs)
    snap_dir = write_stage(data_dir, cat, index, model, contents, extra_files, prev)
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


def _concepts_entry(model: ModelInfo) -> ConceptsEntry | None:
    if model.vocabulary is None:
        return None
    return ConceptsEntry(vocabulary=model.vocabulary, classes=model.classes, top_k=TOP_K)


def _same_model(prev: Snapshot, model: ModelInfo) -> bool:
    """Whether the previous snapshot's vectors (and concepts) are this model's: then
    they carry."""
    return (
        prev.manifest.model.fingerprint == model.fingerprint
        and prev.vectors.shape[1] == model.dim
        and (prev.concepts is not None) == (model.vocabulary is not None)
    )
