"""Map payload size and latency for 100k points, over loopback HTTP; atlas size by format.

Writes a real snapshot of `--points` images (default 100,000) with synthetic
8-d vectors, three synthetic layouts and 64 clusters (the map endpoints never read
the vectors), through indexer.snapshot.write_snapshot into a temp folder (under
/dev/shm where it exists: 100k fsynced thumbnail files on disk take ~90 s and say
nothing about the endpoint). Then starts the real server (`pixscape serve`) and:

  map_bytes            size of GET /api/maps/umap (binary) for that many points
  map_json_bytes       size of the ?format=json form (base64 columns)
  map_first_ms         the first request: encodes the body (then it is cached)
  map_p50_ms, map_p90_ms, map_p99_ms
                       client wall time of `--requests` sequential GETs on one
                       keep-alive connection, after the first
  map_encode_ms        encode_binary() alone, in process, median of 5

With `--atlas-data DIR` (a data dir with a published snapshot of real images) it
also builds that snapshot's atlases as WebP and as JPEG:
  atlas_bytes, atlas_seconds   per format and cell size (one line each).

  python bench/maps_payload.py --atlas-data /tmp/pix1k/data
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx
import numpy as np
from _common import emit, median, note, percentile, serve

BENCH = "maps_payload"


def write_fake_snapshot(data: Path, n: int, model: Path) -> None:
    import faiss

    from indexer import index as faiss_index
    from indexer.catalog import CatalogRow
    from indexer.manifest import CollectionEntry, Contents, ModelEntry
    from indexer.maps import Maps
    from indexer.snapshot import publish, write_snapshot

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(8)
    index.add(vectors)
    rows = [CatalogRow(i, f"img/{i}.jpg", f"{i:064x}", 1, 1, 1, "JPEG", None) for i in range(n)]
    centres = rng.random((64, 2))
    labels = rng.integers(0, 64, n)
    layouts = {
        name: np.clip(centres[labels] + rng.normal(0, 0.03, (n, 2)), 0, 1).astype(np.float32)
        for name in ("tsne", "umap", "grid")
    }
    clusters = [
        {
            "id": c,
            "size": int((labels == c).sum()),
            "representative": int(np.flatnonzero(labels == c)[0]),
            "label": f"cluster {c}",
            "label_share": 1.0,
            "centers": {k: [round(float(v), 5) for v in centres[c]] for k in layouts},
        }
        for c in range(64)
    ]
    quality = {"trustworthiness": 0.9, "knn_preservation": 0.4, "k": 10, "sample": 1000}
    info = {
        "version": 1,
        "seed": 0,
        "layouts": {k: {"params": {"seed": 0}, "quality": quality} for k in layouts},
        "clusters": clusters,
    }
    maps = Maps(layouts, labels.astype(np.int16), info)
    snap = write_snapshot(
        data,
        rows=rows,
        vectors=vectors,
        index_bytes=faiss_index.to_bytes(index),
        model_path=model,
        thumbnails=[b""] * n,
        contents=Contents(
            model=ModelEntry(id="fake", fingerprint="0", input_size=224, dim=8),
            index_type="Flat",
            collection=CollectionEntry(root=str(data), files_seen=n),
            layouts=tuple(layouts),
        ),
        extra_files=maps.files(),
    )
    publish(data, snap)


def find_model(args: argparse.Namespace, tmp: Path) -> Path:
    if args.model:
        return Path(args.model)
    from _common import export_models

    note("exporting the ONNX model (the server loads it with the snapshot)")
    return export_models(tmp / "models")[1]


def bench_http(data: Path, n: int, requests: int, tmp: Path) -> None:
    with serve(data, timeout=120, log_dir=tmp) as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            t = time.perf_counter()
            res = client.get("/api/maps/umap")
            first = (time.perf_counter() - t) * 1000
            res.raise_for_status()
            emit(BENCH, "map_bytes", len(res.content), "bytes", n=n, runs=1)
            emit(BENCH, "map_first_ms", round(first, 2), "ms", n=n, runs=1)
            times = []
            for _ in range(requests):
                t = time.perf_counter()
                r = client.get("/api/maps/umap")
                r.raise_for_status()
                times.append((time.perf_counter() - t) * 1000)
            for q in (50, 90, 99):
                value = round(percentile(times, q), 2)
                emit(BENCH, f"map_p{q}_ms", value, "ms", n=n, runs=requests)
            j = client.get("/api/maps/umap", params={"format": "json"})
            emit(BENCH, "map_json_bytes", len(j.content), "bytes", n=n, runs=1)


def bench_encode(data: Path, n: int) -> None:
    from indexer.snapshot import open_snapshot
    from service.routes.maps import encode_binary

    snap = open_snapshot(data)
    times = []
    for _ in range(5):
        t = time.perf_counter()
        encode_binary(snap, "umap")
        times.append((time.perf_counter() - t) * 1000)
    emit(BENCH, "map_encode_ms", round(median(times), 2), "ms", n=n, runs=5, all_runs=times)


def bench_atlas(data: Path) -> None:
    from indexer.atlas import build_atlases
    from indexer.snapshot import open_snapshot

    snap = open_snapshot(data)
    thumbs = [snap.thumbnail_path(i).read_bytes() for i in range(snap.count)]
    for fmt in ("webp", "jpeg"):
        t = time.perf_counter()
        _, index = build_atlases(range(len(thumbs)), thumbs.__getitem__, fmt=fmt)
        seconds = time.perf_counter() - t
        emit(BENCH, "atlas_seconds", round(seconds, 2), "s", n=snap.count, format=fmt, runs=1)
        for size in index["sizes"]:
            total = sum(s["bytes"] for s in size["sheets"])
            emit(
                BENCH,
                "atlas_bytes",
                total,
                "bytes",
                n=snap.count,
                format=fmt,
                cell=size["cell"],
                sheets=len(size["sheets"]),
                runs=1,
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=50)
    ap.add_argument("--model", help="an exported .onnx to put in the snapshot (else export)")
    ap.add_argument("--atlas-data", type=Path, help="data dir of real images for atlas sizes")
    args = ap.parse_args()
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp_name:
        tmp = Path(tmp_name)
        data = tmp / "data"
        note(f"writing a {args.points:,}-image snapshot into {data}")
        write_fake_snapshot(data, args.points, find_model(args, tmp))
        bench_http(data, args.points, args.requests, tmp)
        bench_encode(data, args.points)
    if args.atlas_data:
        bench_atlas(args.atlas_data)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
