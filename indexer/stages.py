"""The stages of finishing a build, each a function of what it needs returning
what it made (indexer.finish runs them in order): catalog, neighbours, graph,
maps, atlases, the written snapshot.

`carry` is the previous snapshot when it indexes the same folder with the same
model: unchanged images are taken from it (indexer.carry, indexer.update). Maps
are fitted in full (indexer.mapfit, the layout libraries, imported only then)
unless they can be carried, and never with `place_only`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from . import graph as path_graph
from . import index as faiss_index
from . import neighbours
from .atlas import build_atlases
from .cache import CachedItem, CacheRowLost
from .carry import Thumbnails, atlas_keeper, carried_edges, copy_rows, previous_knn
from .catalog import CatalogRow
from .concept_scores import TOP_K
from .concepts import Concepts
from .config import KNN_K, BuildConfig
from .layout import knn_needed
from .manifest import Contents, ModelEntry
from .maps import Maps
from .naming import cluster_names, name_clusters
from .scan import FileEntry, readable
from .snapshot import Snapshot, TopConcepts, write_snapshot
from .update import DRIFT_LIMIT, assign_ids, carried_rows, carry_maps, update_knn


class RelayoutDue(RuntimeError):
    """A place-only build found maps it cannot place new images on: a full build
    (`pixscape index`) must lay them out again."""


@dataclass(frozen=True)
class ModelInfo:
    id: str
    fingerprint: str
    input_size: int
    dim: int
    onnx_path: Path
    vocabulary: str | None = None  # the classifier's concepts (ModelSpec.concepts), if any
    classes: int = 0  # the classifier's output size

    def entry(self) -> ModelEntry:
        """The manifest's model entry."""
        return ModelEntry(
            id=self.id, fingerprint=self.fingerprint, input_size=self.input_size, dim=self.dim
        )


@dataclass(frozen=True)
class Catalog:
    """The new snapshot's images in id order, and where each one's data comes from."""

    ids: np.ndarray  # row -> catalog id, increasing
    next_id: int
    rows: list[CatalogRow]
    vectors: np.ndarray  # (N, D) float32
    carried: np.ndarray  # row -> the carry's row of the same unchanged image, or -1
    thumbnails: Thumbnails
    concepts: TopConcepts | None  # with a classifier: each row's top concepts


@dataclass(frozen=True)
class Neighbours:
    sims: np.ndarray  # (N, k) inner products, best first
    ids: np.ndarray  # (N, k) rows, self excluded, -1 padded
    k: int
    recomputed: int  # rows searched afresh (all of them in a full build)


def catalog_stage(
    kept: list[FileEntry],
    prev: Snapshot | None,
    carry: Snapshot | None,
    model: ModelInfo,
    fetch: Callable[[list[str]], dict[str, CachedItem]],
) -> Catalog:
    """Ids (kept across snapshots by path), rows, vectors and top concepts, in id order.

    Unchanged images come from the carry (its memory-mapped vectors and concepts,
    its catalog, its thumbnail files); only new or changed ones from the cache.
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
    vectors = np.empty((len(kept), model.dim), np.float32)
    if carry is not None:
        copy_rows(vectors, carry.vectors, carried)
    concepts = _carried_concepts(len(kept), carry, carried) if model.vocabulary else None
    rows: list[CatalogRow] = []
    for r, (image_id, e) in enumerate(zip(ids.tolist(), kept, strict=True)):
        if carry is not None and carried[r] >= 0:
            was = carry.rows[int(carried[r])]
            width, height, fmt = was.width, was.height, was.format
        else:
            item = fresh[e.sha256]
            width, height, fmt = item.width, item.height, item.format
            vectors[r] = item.vector
            if concepts is not None:
                assert item.concepts is not None  # the cache has them for such a model
                concepts.classes[r], concepts.probs[r] = item.concepts
        rows.append(CatalogRow(image_id, e.rel_path, e.sha256, e.size, width, height, fmt, e.label))
    thumbnails = Thumbnails(ids, shas, carried, carry, fresh, fetch)
    return Catalog(ids, next_id, rows, vectors, carried, thumbnails, concepts)


def _carried_concepts(count: int, carry: Snapshot | None, carried: np.ndarray) -> TopConcepts:
    """Top concepts for `count` rows, the carried ones filled from the carry."""
    out = TopConcepts(np.zeros((count, TOP_K), np.uint16), np.zeros((count, TOP_K), np.float16))
    if carry is not None:
        if carry.concepts is None:
            raise ValueError("the carried snapshot lacks the concepts of its model")
        copy_rows(out.classes, carry.concepts.classes, carried)
        copy_rows(out.probs, carry.concepts.probs, carried)
    return out


def neighbours_stage(
    index: Any, cat: Catalog, carry: Snapshot | None, config: BuildConfig
) -> Neighbours:
    """The build's one k-NN pass: updated from the carry's lists where it has them."""
    k = max(KNN_K, knn_needed(config.layouts, config.layout_params))
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
    config: BuildConfig,
    log: Callable[[str], None],
) -> Maps | None:
    """The carry's maps with new images placed, else maps fitted in full; None
    when a place-only build has no maps to place on."""
    labels = [r.label for r in cat.rows]
    if carry is not None and carry.layouts and not config.relayout:
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
            layouts=config.layouts,
            refit_on_drift=not config.place_only,
        )
        if maps is not None:
            placed = maps.info["update"]["placed"]
            log(f"maps carried over: {placed} new or changed images placed among their neighbours")
            return _named(_with_catalog_ids(maps, cat.ids), cat)
    if config.place_only:
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
        layouts=config.layouts,
        params=config.layout_params,
        n_jobs=config.threads or -1,
        log=log,
    )
    full = {"mode": "full", "placed": 0, "placed_since_full": 0, "full_count": len(cat.rows)}
    update = {**full, "drift_limit": DRIFT_LIMIT, "refit_due": False}
    maps = replace(maps, info={**maps.info, "update": update})
    return _named(_with_catalog_ids(maps, cat.ids), cat)


def atlas_stage(
    cat: Catalog, prev: Snapshot | None, gone: np.ndarray
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The thumbnail atlases; sheets holding no change come from `prev`."""
    return build_atlases(
        cat.ids.tolist(),
        lambda image_id: cat.thumbnails[int(np.searchsorted(cat.ids, image_id))],
        keep=atlas_keeper(prev, np.concatenate([cat.ids[cat.carried < 0], gone])),
    )


def write_stage(
    data_dir: Path,
    cat: Catalog,
    index: Any,
    model: ModelInfo,
    contents: Contents,
    extra_files: dict[str, bytes],
    prev: Snapshot | None,
) -> Path:
    """The snapshot's folder, complete; unchanged thumbnails linked from `prev`."""
    return write_snapshot(
        data_dir,
        rows=cat.rows,
        vectors=cat.vectors,
        index_bytes=faiss_index.to_bytes(index),
        model_path=model.onnx_path,
        thumbnails=cat.thumbnails,
        contents=contents,
        extra_files=extra_files,
        link_thumbs_from=prev.path / "thumbs" if prev is not None else None,
        unchanged_thumbs={int(i) for i in cat.ids[cat.carried >= 0]},
    )


def _named(maps: Maps, cat: Catalog) -> Maps:
    """The clusters with their names in words (indexer.naming), from the images' top
    concepts where the model has them, else from their folders."""
    clusters = maps.info["clusters"]
    words: list[str | None] = [None] * len(clusters)
    if cat.concepts is not None:
        words = cluster_names(
            np.asarray(maps.clusters, np.int64),
            len(clusters),
            cat.concepts.classes,
            cat.concepts.probs,
            Concepts.load(),
        )
    return replace(maps, info={**maps.info, "clusters": name_clusters(clusters, words)})


def _with_catalog_ids(maps: Maps, ids: np.ndarray) -> Maps:
    """Cluster representatives as catalog ids (what clients see), not rows."""
    clusters = [
        {**c, "representative": int(ids[c["representative"]]) if c["representative"] >= 0 else -1}
        for c in maps.info["clusters"]
    ]
    return replace(maps, info={**maps.info, "clusters": clusters})
