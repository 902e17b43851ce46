"""Search latency and throughput against the real server, over loopback HTTP.

Run: python bench/search_latency.py [--photos PATH] [--data DIR] [--requests 200]
                                    [--clients 8] [--load-requests 400] [--k 20]

Builds a snapshot of the photos into a temporary data dir (or reuses --data if it
already has a published snapshot), starts `pixscape serve` as a subprocess on a
free 127.0.0.1 port, waits for /api/health to report ok, then:
  sequential: one keep-alive httpx client uploads the same 500x375 JPEG photo
              --requests times to POST /api/search?k=K, one after another
              (after 5 untimed warm-up requests). Figures:
              search_p50_ms, search_p90_ms, search_p99_ms, search_mean_ms
              (client-side wall time per request), search_server_p50_ms
              (the server's own took_ms).
  load:       --clients threads, each with its own client and connection, share
              --load-requests uploads. Figures: load_requests_per_s,
              load_p50_ms, load_p99_ms, load_errors (non-200 or exceptions).
The server is always stopped at the end. Prints one JSON line per figure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx2 as httpx
from _common import (
    DEFAULT_PHOTOS,
    emit,
    loadavg,
    median,
    note,
    percentile,
    photo_files,
    serve,
)
from PIL import Image

BENCH = "search"
WARMUP = 5


def pick_query(photos: Path, size: tuple[int, int] = (500, 375)) -> Path:
    for path in photo_files(photos):
        with Image.open(path) as im:
            if im.size == size and im.format == "JPEG":
                return path
    raise SystemExit(f"no {size[0]}x{size[1]} JPEG in {photos}")


def ensure_snapshot(photos: Path, data: Path) -> None:
    if (data / "CURRENT").exists():
        note(f"reusing the snapshot published in {data}")
        return
    from indexer.build import build

    note(f"building a snapshot of {photos} into {data} (includes the model export)")
    t0 = time.perf_counter()
    report = build(photos, data)
    note(f"built {report.indexed} images in {time.perf_counter() - t0:.1f}s")


def one_search(client: httpx.Client, url: str, name: str, body: bytes) -> tuple[float, int, float]:
    """(client ms, status, server took_ms or nan)"""
    t0 = time.perf_counter()
    r = client.post(url, files={"file": (name, body, "image/jpeg")})
    ms = (time.perf_counter() - t0) * 1000
    took = float("nan")
    if r.status_code == 200:
        took = float(r.json().get("took_ms", float("nan")))
    return ms, r.status_code, took


def sequential(url: str, name: str, body: bytes, n: int, k: int) -> None:
    lat, took, errors = [], [], 0
    with httpx.Client(timeout=30.0) as client:
        for _ in range(WARMUP):
            one_search(client, url, name, body)
        for _ in range(n):
            ms, status, server_ms = one_search(client, url, name, body)
            if status != 200:
                errors += 1
                continue
            lat.append(ms)
            took.append(server_ms)
    extra = {"n": len(lat), "k": k, "errors": errors, "query": name, "runs": 1}
    emit(BENCH, "search_p50_ms", round(percentile(lat, 50), 2), "ms", **extra)
    emit(BENCH, "search_p90_ms", round(percentile(lat, 90), 2), "ms", **extra)
    emit(BENCH, "search_p99_ms", round(percentile(lat, 99), 2), "ms", **extra)
    emit(BENCH, "search_mean_ms", round(sum(lat) / max(len(lat), 1), 2), "ms", **extra)
    emit(BENCH, "search_server_p50_ms", round(median(took), 2) if took else None, "ms", **extra)


def load(url: str, name: str, body: bytes, total: int, clients: int, k: int) -> None:
    lock = threading.Lock()
    remaining = [total]
    lat: list[float] = []
    errors = [0]
    start = threading.Barrier(clients + 1, timeout=120)

    def worker() -> None:
        with httpx.Client(timeout=60.0) as client:
            try:  # open this client's connection, untimed
                one_search(client, url, name, body)
            except httpx.HTTPError:
                with lock:
                    errors[0] += 1
            start.wait()
            while True:
                with lock:
                    if remaining[0] <= 0:
                        return
                    remaining[0] -= 1
                try:
                    ms, status, _ = one_search(client, url, name, body)
                except httpx.HTTPError:
                    with lock:
                        errors[0] += 1
                    continue
                with lock:
                    if status == 200:
                        lat.append(ms)
                    else:
                        errors[0] += 1

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=600)
    wall = time.perf_counter() - t0
    extra = {"n": total, "clients": clients, "k": k, "runs": 1}
    emit(
        BENCH,
        "load_requests_per_s",
        round(len(lat) / wall, 2),
        "requests/s",
        wall_s=round(wall, 2),
        **extra,
    )
    emit(BENCH, "load_p50_ms", round(percentile(lat, 50), 2), "ms", **extra)
    emit(BENCH, "load_p99_ms", round(percentile(lat, 99), 2), "ms", **extra)
    emit(BENCH, "load_errors", errors[0], "requests", **extra)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    ap.add_argument("--data", type=Path, default=None, help="reuse (or build into) this data dir")
    ap.add_argument("--requests", type=int, default=200, help="sequential requests")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients for the load test")
    ap.add_argument("--load-requests", type=int, default=400, help="requests in the load test")
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--startup-timeout", type=float, default=120.0)
    args = ap.parse_args()

    query = pick_query(args.photos)
    body = query.read_bytes()
    with tempfile.TemporaryDirectory(prefix="pixscape-search-bench-") as tmp:
        data = args.data or Path(tmp) / "data"
        ensure_snapshot(args.photos, data)
        note(f"load average {loadavg()}")
        with serve(data, timeout=args.startup_timeout) as base:
            emit(BENCH, "server_ready_s", round(base.ready_s, 2), "s", runs=1)
            url = f"{base}/api/search?k={args.k}"
            sequential(url, query.name, body, args.requests, args.k)
            load(url, query.name, body, args.load_requests, args.clients, args.k)
        note(f"load average {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
