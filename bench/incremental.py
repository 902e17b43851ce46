"""Adding images to a large collection: incremental rebuild vs a rebuild from scratch.

A synthetic collection of N tiny but real PNG files (unique content each) whose
embeddings are pre-filled in the embedding cache with clustered unit vectors of
the model's dimension, so both runs measure everything *but* the CNN (which costs
the same per new image either way): scan and hash, catalog, FAISS, k-NN, graph,
t-SNE/UMAP/grid, clusters, atlases, thumbnails, snapshot write and publish.

    python bench/incremental.py                 # N=100,000, add 1,000 (~30-40 min on 2 cores)
    python bench/incremental.py --n 20000       # quicker

Figures: `full_build_s` (the N-image collection from nothing), `add_incremental_s`
(the same folder plus --add files, carried over), `rebuild_s` (that grown folder
indexed again into a data folder with the same embedding cache but no previous
snapshot, i.e. everything recomputed; skipped with --no-rebuild),
`speedup` (rebuild / incremental), and `old_moved_max` (largest move of any old
image on any map in the incremental run: 0 means nothing moved).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import emit, note
from PIL import Image

from indexer.build import build
from indexer.cache import CachedItem, EmbeddingCache
from indexer.models import ensure_onnx, get_spec
from indexer.progress import Progress
from indexer.snapshot import open_snapshot

BENCH = "incremental"
DIM = 1280


def png(i: int) -> bytes:
    """A 4x4 PNG whose pixels spell out i: unique content, real file."""
    px = np.frombuffer(i.to_bytes(48, "little"), dtype=np.uint8).reshape(4, 4, 3)
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, format="PNG")
    return buf.getvalue()


def thumbs(k: int, rng: np.random.Generator) -> list[bytes]:
    out = []
    for _ in range(k):
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), tuple(int(v) for v in rng.integers(30, 230, 3))).save(
            buf, format="JPEG", quality=70
        )
        out.append(buf.getvalue())
    return out


def add_files(
    folder: Path, cache: EmbeddingCache, first: int, count: int, rng: np.random.Generator
) -> None:
    """Files first..first+count-1, their embeddings cached (clustered, unit norm)."""
    centres = np.random.default_rng(7).normal(size=(64, DIM)).astype(np.float32)
    palette = thumbs(64, np.random.default_rng(8))
    for start in range(first, first + count, 5000):
        ids = np.arange(start, min(start + 5000, first + count))
        cluster = rng.integers(0, 64, len(ids))
        vec = centres[cluster] + 0.6 * rng.normal(size=(len(ids), DIM)).astype(np.float32)
        vec /= np.linalg.norm(vec, axis=1, keepdims=True)
        items = []
        for i, c, v in zip(ids, cluster, vec, strict=True):
            data = png(int(i))
            path = folder / f"c{c:02d}" / f"img{i:07d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            items.append(CachedItem(sha, 4, 4, "PNG", v, palette[c]))
        cache.put_many(items)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--add", type=int, default=1000)
    ap.add_argument("--no-rebuild", action="store_true")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: temp)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="pixscape-incremental-"))
    folder, data = work / "collection", work / "data"
    note(f"working in {work}")
    _, fingerprint = ensure_onnx(get_spec("efficientnet-lite0"), data / "models")
    key = f"efficientnet-lite0-{fingerprint[:16]}"
    rng = np.random.default_rng(0)
    with EmbeddingCache(data / "cache", key, DIM) as cache:
        add_files(folder, cache, 0, args.n, rng)
    note(f"{args.n} files written and cached; full build ...")
    quiet = Progress(quiet=True)
    t0 = time.monotonic()
    build(folder, data, progress=quiet)
    full = time.monotonic() - t0
    emit(BENCH, "full_build_s", round(full, 1), "s", n=args.n, runs=1)
    before = open_snapshot(data)

    with EmbeddingCache(data / "cache", key, DIM) as cache:
        add_files(folder, cache, args.n, args.add, rng)
    note(f"added {args.add} files; incremental build ...")
    t0 = time.monotonic()
    report = build(folder, data, progress=quiet)
    inc = time.monotonic() - t0
    after = open_snapshot(data)
    emit(BENCH, "add_incremental_s", round(inc, 2), "s", n=args.n, added=args.add, runs=1)
    rows = np.array([after.row_of(int(i)) for i in before.ids])
    moved = max(
        float(np.abs(after.layouts[name][rows] - pos).max()) for name, pos in before.layouts.items()
    )
    emit(BENCH, "old_moved_max", moved, "map units", n=args.n, added=args.add, runs=1)
    emit(
        BENCH,
        "incremental_stages",
        round(sum(report.stages.values()), 2),
        "s",
        what="the incremental build's stages, seconds each",
        **report.stages,
        placed=after.maps["update"]["placed"],
        runs=1,
    )
    baseline = full
    if not args.no_rebuild:
        note("rebuild from scratch (same folder, same embedding cache, no snapshot) ...")
        fresh = work / "data-rebuild"
        for part in ("models", "cache"):
            shutil.copytree(data / part, fresh / part)
        t0 = time.monotonic()
        build(folder, fresh, progress=quiet)
        baseline = time.monotonic() - t0
        emit(BENCH, "rebuild_s", round(baseline, 1), "s", n=args.n + args.add, runs=1)
    emit(
        BENCH,
        "speedup",
        round(baseline / inc, 1),
        "x",
        baseline="rebuild_s" if not args.no_rebuild else "full_build_s",
        n=args.n,
        added=args.add,
        runs=1,
    )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
