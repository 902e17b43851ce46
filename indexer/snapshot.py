"""Write, open and publish snapshots: the contract between indexer and service.

    data/snapshots/<id>/ manifest.json catalog.sqlite vectors.npy index.faiss
                         model.onnx thumbs/<image id>.webp graph.npz knn.npz
                         layouts/<name>.npy clusters.npy maps.json atlas/
                         concepts/classes.npy concepts/probs.npy
    data/CURRENT         the live snapshot's id

manifest.json is typed in indexer.manifest; this module writes and reads every
other file (layouts, clusters and maps.json are serialised by maps.Maps.files).

A snapshot is built in a hidden temp folder, every file fsynced, then renamed into
place; CURRENT is replaced with os.replace only after that. An interrupted build
therefore leaves CURRENT on the previous, complete snapshot. Snapshots are never
modified after publishing; the service only reads them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import time
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import scipy.sparse as sp

from . import index as faiss_index
from . import manifest as manifest_file
from .catalog import CatalogRow, read_catalog, write_catalog
from .digest import sha256_file
from .manifest import (
    GRAPH_FILE,
    KNN_FILE,
    Contents,
    Manifest,
    ManifestError,
    ThumbnailsEntry,
)
from .thumbs import THUMB_SUFFIX

CORE_FILES = ("catalog.sqlite", "vectors.npy", "index.faiss", "model.onnx")


class SnapshotError(RuntimeError):
    """A snapshot is missing, incomplete or fails its checksums."""


# ---------------------------------------------------------------- writing


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def write_snapshot(
    data_dir: Path,
    *,
    rows: Sequence[CatalogRow],
    vectors: np.ndarray,
    index_bytes: bytes,
    model_path: Path,
    thumbnails: Sequence[bytes],
    contents: Contents,
    extra_files: Mapping[str, bytes] | None = None,
    link_thumbs_from: Path | None = None,
    unchanged_thumbs: Set[int] = frozenset(),
) -> Path:
    """Write a complete snapshot under data/snapshots/ and return its folder.

    `extra_files` maps relative paths (layouts/umap.npy, graph.npz, atlas/...) to
    their bytes; they are checksummed in the manifest like the core files.
    Thumbnails of the ids in `unchanged_thumbs` are hard links to the same files
    in `link_thumbs_from` (a published, hence immutable, snapshot's thumbs/):
    an update of a large collection then writes only the thumbnails that changed,
    and `thumbnails` (which may be a lazy sequence) is read only for those.
    Does not publish it: call `publish` after.
    """
    if not (len(rows) == len(vectors) == len(thumbnails)):
        raise ValueError("rows, vectors and thumbnails must have one entry per image")
    snapshots = data_dir / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    tmp = snapshots / f".tmp-{stamp}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()

    np.save(tmp / "vectors.npy", np.ascontiguousarray(vectors, dtype=np.float32))
    _fsync_file(tmp / "vectors.npy")
    _write_bytes(tmp / "index.faiss", index_bytes)
    write_catalog(tmp / "catalog.sqlite", rows)
    _fsync_file(tmp / "catalog.sqlite")
    shutil.copyfile(model_path, tmp / "model.onnx")
    _fsync_file(tmp / "model.onnx")
    _write_thumbnails(tmp / "thumbs", rows, thumbnails, link_thumbs_from, unchanged_thumbs)
    extra = dict(extra_files or {})
    _write_extra(tmp, extra)

    files = {name: sha256_file(tmp / name) for name in (*CORE_FILES, *sorted(extra))}
    # The catalog (each image's content hash) stands for the thumbnails made from them.
    content = hashlib.sha256(json.dumps(files, sort_keys=True).encode())
    snapshot_id = f"{stamp}-{content.hexdigest()[:8]}"
    full = Manifest(
        **{name: getattr(contents, name) for name in Contents.model_fields},
        format_version=manifest_file.FORMAT_VERSION,
        id=snapshot_id,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        count=len(rows),
        dim=int(vectors.shape[1]) if len(vectors) else contents.model.dim,
        files=files,
        thumbnails=ThumbnailsEntry(count=len(rows), format=THUMB_SUFFIX.lstrip(".")),
    )
    _write_bytes(tmp / manifest_file.NAME, full.to_json())
    fsync_dir(tmp)

    final = snapshots / snapshot_id
    if final.exists():  # same second, same content: keep the one already there
        shutil.rmtree(tmp)
        return final
    os.rename(tmp, final)
    fsync_dir(snapshots)
    return final


def _write_thumbnails(
    into: Path,
    rows: Sequence[CatalogRow],
    thumbnails: Sequence[bytes],
    link_from: Path | None,
    unchanged: Set[int],
) -> None:
    """thumbs/<id>.jpg: hard links to `link_from` for the `unchanged` ids, else written."""
    into.mkdir()
    linked = str(link_from) if link_from is not None else None
    folder = str(into)
    for i, row in enumerate(rows):
        name = f"/{row.id}{THUMB_SUFFIX}"
        if linked is not None and row.id in unchanged:
            try:
                os.link(linked + name, folder + name)
                continue
            except OSError:
                pass  # another file system, or the file is gone: write it instead
        _write_bytes(Path(folder + name), thumbnails[i])
    fsync_dir(into)


def _write_extra(tmp: Path, extra: Mapping[str, bytes]) -> None:
    """The files beside the core ones, each inside the snapshot folder."""
    for rel, data in sorted(extra.items()):
        target = tmp / rel
        if not target.resolve().is_relative_to(tmp.resolve()) or rel in CORE_FILES:
            raise ValueError(f"bad snapshot file name {rel!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        _write_bytes(target, data)
    for folder in {(tmp / rel).parent for rel in extra}:
        fsync_dir(folder)


def publish(data_dir: Path, snapshot_dir: Path) -> None:
    """Point CURRENT at `snapshot_dir`, atomically."""
    tmp = data_dir / ".CURRENT.tmp"
    _write_bytes(tmp, (snapshot_dir.name + "\n").encode())
    os.replace(tmp, data_dir / "CURRENT")
    fsync_dir(data_dir)


# What write_snapshot names a snapshot: its UTC time and a content hash. One
# path component, nothing hidden, nothing to climb out of snapshots/ with.
SNAPSHOT_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}")
_CURRENT_MAX = 256  # bytes read from CURRENT: one id and a newline, with room


def current_id(data_dir: Path) -> str | None:
    """The snapshot id CURRENT names; None when nothing is published yet.

    CURRENT is joined into a path, so it must be a plain file naming one real
    folder in snapshots/ (not a symlink, which could lead anywhere): anything
    else raises SnapshotError rather than be followed.
    """
    path = data_dir / "CURRENT"
    try:
        # No symlink, and no blocking on a FIFO: checked on the opened file itself.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SnapshotError(f"{path} unreadable ({exc.strerror}): remove it") from exc
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SnapshotError(f"{path} is not a plain file: remove it, then run `pixscape index`")
        text = fh.read(_CURRENT_MAX).decode("ascii", errors="replace").strip()
    if not text:
        return None
    folder = data_dir / "snapshots" / text
    if not SNAPSHOT_ID.fullmatch(text) or not _is_plain_dir(folder):
        raise SnapshotError(
            f"{path} names {text[:80]!r}, not a snapshot folder in {folder.parent}:"
            " fix or remove it, then run `pixscape index`"
        )
    return text


def _is_plain_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)
    except OSError:
        return False


def clean_stale(data_dir: Path, keep: int = 3) -> None:
    """Remove temp folders of dead builds and all but the newest `keep` snapshots.

    The live snapshot is always kept. Call it only while holding the build lock.
    """
    snapshots = data_dir / "snapshots"
    if not snapshots.is_dir():
        return
    live = current_id(data_dir)
    for tmp in snapshots.glob(".tmp-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    done = sorted(p for p in snapshots.iterdir() if not p.name.startswith("."))
    for old in done[:-keep] if keep else done:
        if old.name != live:
            shutil.rmtree(old, ignore_errors=True)


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Snapshot:
    id: str
    path: Path
    manifest: Manifest
    rows: tuple[CatalogRow, ...]
    vectors: np.ndarray  # (N, D) float32, memory-mapped
    index: faiss.Index
    collection_root: Path
    graph: sp.csr_array | None = None  # graph.npz: k-NN graph for paths; None in old snapshots
    # The map (empty in snapshots built before it): layouts/<name>.npy as (N, 2)
    # float32 in [0, 1], clusters.npy (N,) int16, maps.json, atlas/index.json.
    layouts: Mapping[str, np.ndarray] = field(default_factory=dict)
    clusters: np.ndarray | None = None
    maps: Mapping[str, Any] = field(default_factory=dict)
    atlas: Mapping[str, Any] = field(default_factory=dict)
    # Each image's top concepts, memory-mapped (manifest.ConceptsEntry); None in
    # snapshots of a model without a classifier, or built before it.
    concepts: TopConcepts | None = None
    # Row -> catalog id, strictly increasing. Every array above (vectors, index,
    # layouts, clusters, graph) is indexed by row; ids are what clients see, and
    # an image keeps its id across snapshots (thumbs/ and atlas/ go by id).
    ids: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        ids = np.fromiter((r.id for r in self.rows), dtype=np.int64, count=len(self.rows))
        object.__setattr__(self, "ids", ids)

    @property
    def count(self) -> int:
        return len(self.rows)

    def row_of(self, image_id: int) -> int | None:
        """The row of catalog id `image_id`, or None when no image has it."""
        ids = self.ids
        row = int(np.searchsorted(ids, image_id))
        return row if row < len(ids) and ids[row] == image_id else None

    @property
    def model_path(self) -> Path:
        return self.path / "model.onnx"

    def thumbnail_path(self, image_id: int) -> Path:
        return self.path / "thumbs" / f"{image_id}{THUMB_SUFFIX}"


@dataclass(frozen=True)
class TopConcepts:
    classes: np.ndarray  # (N, K) uint16, each row best first
    probs: np.ndarray  # (N, K) float16


def npy_bytes(array: np.ndarray) -> bytes:
    """An .npy file's content (for the snapshot files that `extra_files` carries)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array))
    return buf.getvalue()


def _read_concepts(path: Path, manifest: Manifest, count: int) -> TopConcepts | None:
    entry = manifest.concepts
    if entry is None:
        return None
    classes = np.load(path / entry.classes_file, mmap_mode="r")
    probs = np.load(path / entry.probs_file, mmap_mode="r")
    shape = (count, entry.top_k)
    if classes.shape != shape or probs.shape != shape or classes.dtype != np.uint16:
        raise SnapshotError(f"{path.name}: the concept files are not ({count}, {entry.top_k})")
    if count and int(classes.max()) >= entry.classes:
        raise SnapshotError(f"{path.name}: {entry.classes_file} names a class past {entry.classes}")
    return TopConcepts(classes, probs)


def graph_to_bytes(graph: sp.csr_array) -> bytes:
    """graph.npz content: the CSR graph as scipy.sparse.save_npz writes it."""
    buf = io.BytesIO()
    sp.save_npz(buf, sp.csr_array(graph), compressed=False)
    return buf.getvalue()


def knn_to_bytes(sims: np.ndarray, ids: np.ndarray) -> bytes:
    """knn.npz content: each row's k nearest rows (self excluded, -1 padded)."""
    buf = io.BytesIO()
    # int32 ids: half the bytes to write and checksum, and ids stay below 2**31 rows.
    np.savez(buf, sims=sims.astype(np.float32), ids=ids.astype(np.int32))
    return buf.getvalue()


def read_knn(snap: Snapshot) -> tuple[np.ndarray, np.ndarray] | None:
    """The snapshot's k-NN lists (sims, ids as rows of it), if it has them."""
    path = snap.path / KNN_FILE
    if snap.manifest.knn is None or not path.exists():
        return None
    with np.load(path) as knn:
        sims, ids = knn["sims"], knn["ids"].astype(np.int64)
    if ids.shape != (snap.count, snap.manifest.knn.k) or sims.shape != ids.shape:
        raise SnapshotError(f"{snap.path.name}: {KNN_FILE} is {ids.shape}, not the manifest's")
    return sims, ids


def _read_graph(path: Path, manifest: Manifest, count: int) -> sp.csr_array | None:
    if (manifest.graph is None) != (GRAPH_FILE not in manifest.files):
        raise SnapshotError(f"{path}: {GRAPH_FILE} and the manifest's graph entry disagree")
    if manifest.graph is None:
        return None
    path = path / GRAPH_FILE
    graph = sp.csr_array(sp.load_npz(path))
    if graph.shape != (count, count):
        raise SnapshotError(f"{path.parent.name}: graph.npz is {graph.shape}, not {count} nodes")
    return graph


def _read_maps(path: Path, manifest: Manifest, count: int) -> dict[str, Any]:
    """Layouts, clusters, maps.json and the atlas index, where the snapshot has them."""
    out: dict[str, Any] = {"layouts": {}}
    for name in manifest.layouts:
        pos = np.load(path / "layouts" / f"{name}.npy")
        if pos.shape != (count, 2):
            raise SnapshotError(f"{path.name}: layout {name} is {pos.shape}, not ({count}, 2)")
        out["layouts"][name] = pos.astype(np.float32, copy=False)
    if (path / "clusters.npy").exists():
        out["clusters"] = np.load(path / "clusters.npy")
        if out["clusters"].shape != (count,):
            raise SnapshotError(f"{path.name}: clusters.npy does not cover {count} images")
    for key, name in (("maps", "maps.json"), ("atlas", "atlas/index.json")):
        if (path / name).exists():
            out[key] = json.loads((path / name).read_text())
    return out


def open_snapshot(data_dir: Path, snapshot_id: str | None = None) -> Snapshot:
    """Open (and verify) the snapshot named by CURRENT, or `snapshot_id`."""
    sid = snapshot_id or current_id(data_dir)
    if sid is None:
        raise SnapshotError(f"no snapshot published in {data_dir} (run `pixscape index`)")
    path = data_dir / "snapshots" / sid
    try:
        manifest = manifest_file.read(path)
    except ManifestError as exc:
        raise SnapshotError(f"snapshot {exc}") from exc
    for name, expected in manifest.files.items():
        try:
            actual = sha256_file(path / name)
        except OSError as exc:
            raise SnapshotError(f"snapshot {sid}: {name} missing ({exc})") from exc
        if actual != expected:
            raise SnapshotError(f"snapshot {sid}: {name} fails its checksum")
    rows = read_catalog(path / "catalog.sqlite")
    vectors = np.load(path / "vectors.npy", mmap_mode="r")
    # Memory-mapped where FAISS can (Flat vectors, IVF lists): the service starts
    # fast and its heap stays near the compressed index, not the collection.
    index = faiss.read_index(str(path / "index.faiss"), faiss_index.READ_FLAGS)
    count = manifest.count
    if not (count == len(rows) == len(vectors) == index.ntotal):
        raise SnapshotError(
            f"snapshot {sid}: counts disagree (manifest {count}, catalog {len(rows)},"
            f" vectors {len(vectors)}, index {index.ntotal})"
        )
    if any(a.id >= b.id for a, b in zip(rows, rows[1:], strict=False)) or (rows and rows[0].id < 0):
        raise SnapshotError(f"snapshot {sid}: catalog ids are not increasing from 0 up")
    return Snapshot(
        id=sid,
        path=path,
        manifest=manifest,
        rows=rows,
        vectors=vectors,
        index=index,
        collection_root=Path(manifest.collection.root),
        graph=_read_graph(path, manifest, len(rows)),
        concepts=_read_concepts(path, manifest, len(rows)),
        **_read_maps(path, manifest, len(rows)),
    )
