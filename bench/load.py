"""Load test of the real server over loopback: rated load, overload, hot swap.

Run: python bench/load.py [--photos PATH] [--data DIR]

Starts `pixscape serve` with PIXSCAPE_WORKERS and PIXSCAPE_QUEUE_LIMIT set, then:
  rated     CLIENTS clients in closed loops (within workers + queue): throughput,
            p50/p99 latency, errors (any non-200 counts);
  overload  OVER clients, more than workers + queue: how many got 200 and how many
            got a clean 503 with Retry-After, and how fast the 503s came;
  swap      the rated load again while the data folder is re-indexed and
            republished SWAPS times (alternating two collections so each swap
            changes the snapshot): failed requests during the swaps.
Bounded in count and time; loopback only. One JSON line per figure.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx2 as httpx
from _common import DEFAULT_PHOTOS, emit, limited_copy, note, percentile, serve
from search_latency import ensure_snapshot, pick_query


def closed_loop(url: str, body: bytes, clients: int, per_client: int) -> list[tuple[int, float]]:
    """`clients` threads, each with its own connection, `per_client` requests each."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(timeout=60.0) as client:
            for _ in range(per_client):
                t0 = time.perf_counter()
                try:
                    status = client.post(url, files={"file": ("q.jpg", body)}).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    results.append((status, (time.perf_counter() - t0) * 1000))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue-limit", type=int, default=8)
    ap.add_argument("--clients", type=int, default=8, help="rated concurrency")
    ap.add_argument("--per-client", type=int, default=40)
    ap.add_argument("--over", type=int, default=48, help="clients in the overload phase")
    ap.add_argument("--swaps", type=int, default=4)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pixscape-load-"))
    data = args.data or work / "data"
    # Two collections that differ, so each republish really changes the snapshot.
    full = limited_copy(args.photos, None, work / "full")
    part = limited_copy(args.photos, 500, work / "part")
    ensure_snapshot(full, data)
    body = pick_query(args.photos).read_bytes()
    env = {
        "PIXSCAPE_WORKERS": str(args.workers),
        "PIXSCAPE_QUEUE_LIMIT": str(args.queue_limit),
        "PIXSCAPE_RELOAD_INTERVAL_S": "0.2",
    }
    try:
        with serve(data, env=env, timeout=60, log_dir=work) as base:
            url = f"{base}/api/search?k=20"
            closed_loop(url, body, 2, 3)  # warm-up

            t0 = time.perf_counter()
            rated = closed_loop(url, body, args.clients, args.per_client)
            wall = time.perf_counter() - t0
            ok = [ms for s, ms in rated if s == 200]
            ctx = {
                "clients": args.clients,
                "workers": args.workers,
                "queue_limit": args.queue_limit,
            }
            emit(
                "load",
                "rated_requests_per_s",
                round(len(rated) / wall, 1),
                "requests/s",
                n=len(rated),
                **ctx,
            )
            emit("load", "rated_p50_ms", round(percentile(ok, 50), 1), "ms", n=len(ok), **ctx)
            emit("load", "rated_p99_ms", round(percentile(ok, 99), 1), "ms", n=len(ok), **ctx)
            emit("load", "rated_errors", len(rated) - len(ok), "requests", n=len(rated), **ctx)

            over = closed_loop(url, body, args.over, 6)
            busy = [ms for s, ms in over if s == 503]
            served = [ms for s, ms in over if s == 200]
            octx = {**ctx, "clients": args.over}
            emit("load", "overload_served", len(served), "requests", n=len(over), **octx)
            emit("load", "overload_503", len(busy), "requests", n=len(over), **octx)
            emit(
                "load",
                "overload_other_errors",
                len(over) - len(busy) - len(served),
                "requests",
                n=len(over),
                **octx,
            )
            if busy:
                emit("load", "overload_503_p50_ms", round(percentile(busy, 50), 1), "ms", **octx)
                emit("load", "overload_503_p99_ms", round(percentile(busy, 99), 1), "ms", **octx)

            from indexer.build import build

            swapped: list[str] = []

            def republish() -> None:
                for i in range(args.swaps):
                    time.sleep(0.5)
                    swapped.append(build(part if i % 2 == 0 else full, data).snapshot_id)

            swapper = threading.Thread(target=republish)
            swapper.start()
            # Rounds of the rated load for as long as snapshots are being published,
            # then one more, after the reload interval, so the last swap is under load too.
            during: list[tuple[int, float]] = []
            while swapper.is_alive():
                during += closed_loop(url, body, args.clients, args.per_client)
            swapper.join()
            time.sleep(0.5)
            during += closed_loop(url, body, args.clients, args.per_client)
            seen = httpx.get(f"{base}/api/stats").json()["snapshot"]
            failed = sum(1 for s, _ in during if s != 200)
            emit(
                "load",
                "swap_failed_requests",
                failed,
                "requests",
                n=len(during),
                swaps=len(swapped),
                final_snapshot_served=seen in swapped,
                **ctx,
            )
    finally:
        note(f"server log: {work / 'server.log'}")
        if args.data is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
