"""scan -> decode -> embed -> index -> snapshot -> publish: the one entry point."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import manifest as manifest_file
from .cache import CachedItem, EmbeddingCache, FileHashes
from .config import BuildConfig
from .decode import DecodeError
from .embed import Embedder
from .finish import finish
from .manifest import ManifestError
from .models import ensure_onnx, get_spec
from .prepare import Prepared, prepare
from .progress import Progress
from .scan import (
    FileEntry,
    Skipped,
    path_bytes,
    readable,
    scan_folder,
)
from .snapshot import Snapshot, SnapshotError, clean_stale, current_id, open_snapshot
from .stages import ModelInfo

INPUTS_VERSION = 1  # bump when inputs_fingerprint() hashes something new


@dataclass
class BuildReport:
    snapshot_id: str
    snapshot_dir: Path
    indexed: int
    embedded: int  # newly embedded this run
    reused: int  # taken from the cache
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    export_seconds: float = 0.0
    embed_seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage, in order
    unchanged: bool = False  # nothing changed: the live snapshot stayed, nothing was written

    @property
    def embed_rate(self) -> float:
        return self.embedded / self.embed_seconds if self.embed_seconds > 0 else 0.0


def embed_pending(
    todo: list[FileEntry],
    embedder: Embedder,
    cache: EmbeddingCache,
    *,
    batch_size: int,
    workers: int,
    max_pixels: int,
    progress: Progress,
) -> list[Skipped]:
    """Decode and embed `todo` into the cache, one committed batch at a time.

    Decoding and inference take turns, each on every core, rather than running
    side by side: onnxruntime's threads meet at a barrier after every layer, so
    a decode thread preempting one of them stalls the other. Measured on 2 cores
    (600 photos): alternating 96 images/s, overlapping 92.
    """
    skipped: list[Skipped] = []
    progress.start("embedding", len(todo))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            futures = [pool.submit(prepare, e, embedder.input_size, max_pixels) for e in chunk]
            batch: list[Prepared] = []
            for entry, future in zip(chunk, futures, strict=True):
                try:
                    batch.append(future.result())
                except DecodeError as exc:
                    skipped.append(Skipped(entry.rel_path, exc.reason))
                    progress.log(f"skipped {readable(entry.rel_path)}: {exc.reason}")
            if batch:
                cache.put_many(embedded_items(embedder, batch))
            progress.advance(len(chunk))
    return skipped


def embedded_items(embedder: Embedder, batch: Sequence[Prepared]) -> list[CachedItem]:
    """One inference pass over `batch`: each image's cache row, with its vector and,
    where the model has a classifier, its top concepts."""
    vectors, tops = embedder.embed_with_top(np.stack([p.pixels for p in batch]))
    return [
        CachedItem(p.sha256, p.width, p.height, p.format, vec, p.thumbnail, top)
        for p, vec, top in zip(batch, vectors, tops, strict=True)
    ]


def inputs_fingerprint(
    root: Path,
    entries: Sequence[FileEntry],
    skipped: Sequence[Skipped],
    options: dict[str, Any],
) -> str:
    """sha256 over everything a snapshot is made from: the collection folder, each
    file's exact name, size and content hash, what the scan skipped and why, and
    the options that shape the result (model and its weights, layouts and their
    parameters, graph, limits). Equal fingerprints make equal snapshots, so a
    build that finds the live snapshot's fingerprint has nothing to do.
    Thread counts, batch size, device and engine change no result: left out.
    """
    digest = hashlib.sha256()
    head = {"version": INPUTS_VERSION, "root": path_bytes(str(root.resolve())).hex(), **options}
    digest.update(json.dumps(head, sort_keys=True).encode())
    # NUL separates fields: no file name can hold one.
    for e in entries:
        digest.update(b"\0F" + path_bytes(e.rel_path) + f"\0{e.size}\0{e.sha256}".encode())
    for s in skipped:
        digest.update(b"\0S" + path_bytes(s.path) + b"\0" + s.reason.encode("utf-8", "replace"))
    return digest.hexdigest()


def _live_if_unchanged(data_dir: Path, fingerprint: str) -> Snapshot | None:
    """The live snapshot, when it was built from exactly these inputs and verifies."""
    live = current_id(data_dir)
    if live is None:
        return None
    try:
        manifest = manifest_file.read(data_dir / "snapshots" / live)
    except ManifestError:
        return None
    if (manifest.inputs or {}).get("fingerprint") != fingerprint:
        return None
    try:
        return open_snapshot(data_dir, live)  # checksums: never keep a damaged one
    except (SnapshotError, OSError, ValueError):
        return None


def _unchanged_report(
    snap: Snapshot, entries: Sequence[FileEntry], skipped: list[Skipped], started: float
) -> BuildReport:
    """What a build that kept `snap` reports: its counts, and every file left out."""
    build_info = snap.manifest.build
    reasons = {s.path: s.reason for s in build_info.skipped} if build_info else {}
    indexed = {r.path for r in snap.rows}
    failed = [
        Skipped(e.rel_path, reasons.get(readable(e.rel_path), "not in the live snapshot"))
        for e in entries
        if e.rel_path not in indexed
    ]
    return BuildReport(
        snapshot_id=snap.id,
        snapshot_dir=snap.path,
        indexed=snap.count,
        embedded=0,
        reused=snap.count,
        skipped=skipped + failed,
        seconds=time.monotonic() - started,
        unchanged=True,
    )


class _BuildLock:
    """One build at a time per data folder (an advisory lock the OS drops on death)."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / ".build.lock"
        self._fd = -1

    def __enter__(self) -> _BuildLock:
        self._fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def build(
    folder: Path,
    data_dir: Path,
    config: BuildConfig | None = None,
    *,
    progress: Progress | None = None,
    onnx_model: tuple[Path, str] | None = None,
    **overrides: Any,
) -> BuildReport:
    """Index `folder` into a new snapshot under `data_dir` and publish it.

    `config` (default: BuildConfig()) with `overrides` of its fields, e.g.
    build(folder, data, layouts="grid", graph_k=6). The previous snapshot of the
    same folder is carried over (indexer.finish): ids stay, unchanged images keep
    their places and new ones are placed among their neighbours, until `relayout`
    or the drift limit asks for full layouts. `place_only` never fits a map (for
    callers without the layout libraries, the service): new images are placed
    even past the drift limit, and maps that cannot be carried raise
    stages.RelayoutDue with nothing published.
    `onnx_model`: (model.onnx, fingerprint) to use instead of exporting the
    config's model, e.g. a snapshot's own model where torch is not installed.
    When the files and options are those the live snapshot was built from, it
    stays live and nothing is written (`BuildReport.unchanged`); `relayout`
    always builds.
    """
    config = (config or BuildConfig()).with_(**overrides)
    progress = progress or Progress(quiet=True)
    started = time.monotonic()
    folder, data_dir = Path(folder), Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    with _BuildLock(data_dir):
        clean_stale(data_dir)
        t_scan = time.monotonic()
        with FileHashes(data_dir / "cache", folder) as hashes:
            entries, skipped = scan_folder(
                folder, hashes.known(), max_file_bytes=config.max_file_bytes
            )
            hashes.replace(entries)
        scan_seconds = time.monotonic() - t_scan
        for s in skipped:
            progress.log(f"skipped {readable(s.path)}: {s.reason}")
        progress.log(f"found {len(entries)} images in {readable(str(folder))}")

        spec = get_spec(config.model_id)
        t0 = time.monotonic()
        onnx_path, fingerprint = onnx_model or ensure_onnx(spec, data_dir / "models")
        export_seconds = time.monotonic() - t0
        options = {"model": {"id": spec.id, "fingerprint": fingerprint}, **config.shaping()}
        digest = inputs_fingerprint(folder, entries, skipped, options)
        inputs: dict[str, Any] = {"fingerprint": digest, "options": config.shaping()}
        kept_live = None if config.relayout else _live_if_unchanged(data_dir, digest)
        if kept_live is not None:
            progress.log(
                f"nothing changed since snapshot {kept_live.id} (same files, same options):"
                " it stays live, no new snapshot written"
            )
            return _unchanged_report(kept_live, entries, skipped, started)
        embedder = Embedder(onnx_path, threads=config.threads, device=config.device)
        model = ModelInfo(
            spec.id,
            fingerprint,
            embedder.input_size,
            embedder.dim,
            onnx_path,
            # A snapshot's own model (onnx_model) from before the classifier output has none.
            vocabulary=spec.concepts if embedder.classes else None,
            classes=embedder.classes,
        )
        report = _embed_and_finish(
            folder,
            data_dir,
            config,
            entries,
            skipped,
            embedder,
            model,
            inputs,
            progress,
            export_seconds=export_seconds,
        )
        clean_stale(data_dir)
    report.seconds = time.monotonic() - started
    report.export_seconds = export_seconds
    report.stages = {
        "scan": round(scan_seconds, 3),
        "export": round(export_seconds, 3),
        **report.stages,
    }
    return report


def _embed_and_finish(
    folder: Path,
    data_dir: Path,
    config: BuildConfig,
    entries: list[FileEntry],
    skipped: list[Skipped],
    embedder: Embedder,
    model: ModelInfo,
    inputs: dict[str, Any],
    progress: Progress,
    *,
    export_seconds: float,
) -> BuildReport:
    """Embed what the cache lacks, then finish the snapshot of every usable entry.
    The report's overall seconds and the scan and export stages are the caller's."""
    model_key = f"{model.id}-{model.fingerprint[:16]}"
    concepts = embedder.classes > 0
    with EmbeddingCache(data_dir / "cache", model_key, embedder.dim, concepts) as cache:
        t1 = time.monotonic()
        todo = _not_cached(entries, cache.known())
        failed = _embed(todo, embedder, cache, config, data_dir / "shards" / model_key, progress)
        embed_seconds = time.monotonic() - t1
        usable = cache.known()
        load_seconds = time.monotonic() - t1 - embed_seconds
        failed_paths = {s.path for s in failed}
        for entry in entries:
            # A file whose content failed under another name is skipped here too.
            if entry.sha256 not in usable and entry.rel_path not in failed_paths:
                failed.append(Skipped(entry.rel_path, "same content as a file that failed"))
        kept = [e for e in entries if e.sha256 in usable]
        all_skipped = skipped + failed
        embedded = len(todo) - len(failed_paths)
        finished = finish(
            data_dir,
            folder,
            kept=kept,
            fetch=cache.get_many,
            model=model,
            config=config,
            files_seen=len(entries),
            build_info={
                "embedded": embedded,
                "reused": len(kept) - embedded,
                "skipped": [
                    {"path": readable(s.path), "reason": s.reason} for s in all_skipped[:1000]
                ],
                "skipped_count": len(all_skipped),
                "export_seconds": round(export_seconds, 3),
                "embed_seconds": round(embed_seconds, 3),
                "engine": config.engine,
            },
            log=progress.log,
            inputs=inputs,
        )
    return BuildReport(
        snapshot_id=finished.snapshot_dir.name,
        snapshot_dir=finished.snapshot_dir,
        indexed=len(kept),
        embedded=embedded,
        reused=len(kept) - embedded,
        skipped=all_skipped,
        embed_seconds=embed_seconds,
        stages={
            "embed": round(embed_seconds, 3),
            "load": round(load_seconds, 3),
            **finished.timings,
        },
    )


def _not_cached(entries: Sequence[FileEntry], known: set[str]) -> list[FileEntry]:
    """The entries to embed: one per distinct content the cache lacks."""
    todo, seen = [], set(known)
    for entry in entries:
        if entry.sha256 not in seen:
            seen.add(entry.sha256)
            todo.append(entry)
    return todo


def _embed(
    todo: list[FileEntry],
    embedder: Embedder,
    cache: EmbeddingCache,
    config: BuildConfig,
    shards_dir: Path,
    progress: Progress,
) -> list[Skipped]:
    """Decode and embed `todo` into the cache with the config's engine."""
    if config.engine == "ray":
        from .engine_ray import embed_pending_ray  # Ray is an optional extra

        return embed_pending_ray(
            todo,
            embedder,
            cache,
            shards_dir=shards_dir,
            batch_size=config.batch_size,
            max_pixels=config.max_pixels,
            device=config.device,
            address=config.ray_address,
            progress=progress,
        )
    return embed_pending(
        todo,
        embedder,
        cache,
        batch_size=config.batch_size,
        workers=config.workers or os.cpu_count() or 2,
        max_pixels=config.max_pixels,
        progress=progress,
    )
