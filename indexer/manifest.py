"""manifest.json, typed: what a snapshot holds, as the indexer writes it and the
service reads it.

`Contents` is what a build says about the snapshot it writes; `write_snapshot`
adds what only the written files can tell (id, counts, dimension, checksums) and
makes it a `Manifest`. Reading validates the whole file at open: a missing or
unknown field, or a value of the wrong type, is a `ManifestError` naming the
field, never a default that hides it in a route later.

Sections added after format 1 first shipped (the FAISS entry, ids, inputs, maps,
k-NN, graph, update, concepts) are optional: snapshots written before them still open, and
readers say what they do without them. Three entries stay mappings, each written
and read back by one module: the FAISS `index` entry (indexer.index), `maps`
(indexer.maps) and `inputs` (indexer.build's fingerprint).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

FORMAT_VERSION = 1
NAME = "manifest.json"
KNN_FILE = "knn.npz"
GRAPH_FILE = "graph.npz"
CONCEPT_CLASSES_FILE = "concepts/classes.npy"
CONCEPT_PROBS_FILE = "concepts/probs.npy"


class ManifestError(ValueError):
    """manifest.json is unreadable, from another format, or not what this pixscape writes."""


class _Section(BaseModel):
    # Unknown fields fail: a typo or a newer writer is an error, not silently dropped.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelEntry(_Section):
    id: str
    fingerprint: str  # sha256 of the exported ONNX file: same fingerprint, same vectors
    input_size: int
    dim: int


class CollectionEntry(_Section):
    root: str  # absolute path of the indexed folder
    files_seen: int


class KnnEntry(_Section):
    file: str = KNN_FILE
    k: int
    recomputed_rows: int


class GraphEntry(_Section):
    file: str = GRAPH_FILE
    k: int
    power: float
    nodes: int
    edges: int
    components_before: int
    components_joined_by: int
    seconds: float


class ConceptsEntry(_Section):
    """The classifier's top concepts of each image (indexer.concept_scores)."""

    vocabulary: str  # models.ModelSpec.concepts: "imagenet-1k", the classes of concepts.json
    classes: int  # the classifier's classes
    top_k: int  # classes kept per image, best first
    classes_file: str = CONCEPT_CLASSES_FILE  # (N, top_k) uint16
    probs_file: str = CONCEPT_PROBS_FILE  # (N, top_k) float16


class UpdateEntry(_Section):
    previous: str | None  # the snapshot this one was carried from
    kept: int
    new_or_changed: int
    removed: int


class SkippedEntry(_Section):
    path: str  # readable (indexer.scan.readable), not the file name's bytes
    reason: str


class BuildEntry(_Section):
    """What the build did: how each image came, what it left out, how long it took."""

    engine: str
    embedded: int
    reused: int
    skipped: list[SkippedEntry]  # the first 1000 of them
    skipped_count: int
    export_seconds: float
    embed_seconds: float
    knn_seconds: float
    maps_seconds: float
    atlas_seconds: float

    def seconds(self) -> dict[str, float]:
        """Stage -> seconds, as /api/stats gives them."""
        return {
            name.removesuffix("_seconds"): float(getattr(self, name))
            for name in type(self).model_fields
            if name.endswith("_seconds")
        }


class ThumbnailsEntry(_Section):
    count: int
    format: str


class Contents(_Section):
    """The build's part of the manifest (see `write_snapshot`)."""

    model: ModelEntry
    collection: CollectionEntry
    index_type: str
    metric: Literal["inner_product"] = "inner_product"
    layouts: tuple[str, ...] = ()
    build: BuildEntry | None = None  # None in synthetic snapshots (tests, benchmarks)
    index: dict[str, Any] | None = None  # index.build_with_manifest's entry
    next_id: int | None = None  # the id the next new image gets
    inputs: dict[str, Any] | None = None  # build's fingerprint of its files and options
    maps: dict[str, Any] | None = None  # maps.manifest_entry
    knn: KnnEntry | None = None
    graph: GraphEntry | None = None
    update: UpdateEntry | None = None
    concepts: ConceptsEntry | None = None  # None: no classifier (or built before it)


class Manifest(Contents):
    """A written snapshot's manifest.json, whole."""

    format_version: Literal[1]
    id: str
    created: str  # UTC, ISO 8601
    count: int
    dim: int
    files: dict[str, str]  # relative path -> sha256, every file but thumbs/
    thumbnails: ThumbnailsEntry

    def to_json(self) -> bytes:
        """The file's bytes: sorted keys, optional sections left out when absent."""
        body = {k: v for k, v in self.model_dump(mode="json").items() if v is not None}
        return json.dumps(body, indent=2, sort_keys=True).encode()


def parse(text: str | bytes, where: str) -> Manifest:
    """The manifest in `text`; `where` (the snapshot's path or id) names it in errors."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{where}: unreadable manifest (not JSON: {exc})") from exc
    version = body.get("format_version") if isinstance(body, dict) else None
    if version != FORMAT_VERSION:
        raise ManifestError(f"{where}: format {version!r} unsupported")
    try:
        return Manifest.model_validate(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise ManifestError(
            f"{where}: manifest.json does not match this pixscape ({problems})"
        ) from exc


def read(snapshot_dir: Path) -> Manifest:
    """`snapshot_dir`/manifest.json, validated."""
    try:
        text = (snapshot_dir / NAME).read_bytes()
    except OSError as exc:
        raise ManifestError(f"{snapshot_dir}: unreadable manifest ({exc.strerror})") from exc
    return parse(text, str(snapshot_dir))
