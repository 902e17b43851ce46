"""Load test of the real server over loopback: rated load, overload, hot swap, slow clients, bursts.

Run: python bench/load.py [--photos PATH] [--data DIR]

Starts `pixscape serve` with PIXSCAPE_WORKERS and PIXSCAPE_QUEUE_LIMIT set, then:
  rated     CLIENTS clients in closed loops (within workers + queue): throughput,
            p50/p99 latency, errors (any non-200 counts);
  overload  OVER clients, more than workers + queue: how many got 200 and how many
            got a clean 503 with Retry-After, and how fast the 503s came;
  swap      the rated load again while the data folder is re-indexed and
            republished SWAPS times (alternating two collections so each swap
            changes the snapshot): failed requests during the swaps;
  slow      TRICKLERS connections send upload headers, then a body one byte a
            second (reconnecting after their 408), while one honest client
            searches: its p50/p99 latency and errors, and the 408s;
  burst     BURSTS bursts of BURST_CLIENTS uploads at once over raw sockets (the
            body in 64 KiB writes, as clients stream a file): resets (any
            transport error), 200s, 503s, and the time to the 503, p50/p99.
`--phase P` (repeatable) picks phases; the default is rated, overload and swap.
Bounded in count and time; loopback only. One JSON line per figure.
"""

from __future__ import annotations

import argparse
import select
import shutil
import socket
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


# ------------------------------------------------ raw sockets: what a client sees

BOUNDARY = "b3nchb0undary"


def _multipart(data: bytes) -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="q.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    )
    return head.encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def _head(path: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str]]:
    """Status and headers of one whole response (its body read and dropped)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a whole status line and headers")
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines)}
    left = int(headers.get("content-length", "0")) - len(body)
    while left > 0:
        chunk = sock.recv(min(left, 65536))
        if not chunk:
            raise ConnectionError("closed inside the response body")
        left -= len(chunk)
    return int(status_line.split()[1]), headers


def _address(base: str) -> tuple[str, int]:
    host, port = base.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def trickle(base: str, stop: threading.Event, started: threading.Event) -> list[int]:
    """One slow client until `stop`: upload headers, then a body byte a second;
    reconnects whenever the server answers. Returns the statuses it got."""
    body = _multipart(b"\xff\xd8" + b"\0" * 100_000)
    statuses: list[int] = []
    while not stop.is_set():
        try:
            with socket.create_connection(_address(base), timeout=30) as sock:
                sock.sendall(_head("/api/search", len(body)))
                for i in range(len(body)):
                    sock.sendall(body[i : i + 1])
                    started.set()
                    if select.select([sock], [], [], 1.0)[0]:
                        statuses.append(_read_response(sock)[0])
                        break
                    if stop.is_set():
                        return statuses
        except OSError:
            statuses.append(0)
            time.sleep(0.2)
    return statuses


def burst(base: str, body: bytes, clients: int) -> list[tuple[str, float]]:
    """`clients` uploads released at once: (outcome, ms from first byte sent to the
    whole response) each; outcome is the status, or "reset" for a transport error."""
    request = _multipart(body)
    head = _head("/api/search?k=20", len(request))
    gate = threading.Barrier(clients, timeout=60)
    results: list[tuple[str, float]] = []
    lock = threading.Lock()

    def one() -> None:
        outcome, t0 = "reset", time.perf_counter()
        try:
            with socket.create_connection(_address(base), timeout=60) as sock:
                gate.wait()
                t0 = time.perf_counter()
                sock.sendall(head)
                for i in range(0, len(request), 65536):
                    sock.sendall(request[i : i + 65536])
                status, headers = _read_response(sock)
                ok_503 = status != 503 or headers.get("retry-after") is not None
                outcome = str(status) if ok_503 else "503-without-retry-after"
        except (OSError, threading.BrokenBarrierError):
            outcome = "reset"
        with lock:
            results.append((outcome, (time.perf_counter() - t0) * 1000))

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


PHASES = ("rated", "overload", "swap", "slow", "burst")


def phase_rated(base: str, body: bytes, args: argparse.Namespace, ctx: dict) -> None:
    url = f"{base}/api/search?k=20"
    t0 = time.perf_counter()
    rated = closed_loop(url, body, args.clients, args.per_client)
    wall = time.perf_counter() - t0
    ok = [ms for s, ms in rated if s == 200]
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


def phase_overload(base: str, body: bytes, args: argparse.Namespace, ctx: dict) -> None:
    over = closed_loop(f"{base}/api/search?k=20", body, args.over, 6)
    busy = [ms for s, ms in over if s == 503]
    served = [ms for s, ms in over if s == 200]
    octx = {**ctx, "clients": args.over}
    emit("load", "overload_served", len(served), "requests", n=len(over), **octx)
    emit("load", "overload_503", len(busy), "requests", n=len(over), **octx)
    other = len(over) - len(busy) - len(served)
    emit("load", "overload_other_errors", other, "requests", n=len(over), **octx)
    if busy:
        emit("load", "overload_503_p50_ms", round(percentile(busy, 50), 1), "ms", **octx)
        emit("load", "overload_503_p99_ms", round(percentile(busy, 99), 1), "ms", **octx)


def phase_swap(
    base: str,
    body: bytes,
    args: argparse.Namespace,
    ctx: dict,
    data: Path,
    collections: tuple[Path, Path],
) -> None:
    from indexer.build import build

    url = f"{base}/api/search?k=20"
    part, full = collections
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


def phase_slow(base: str, body: bytes, args: argparse.Namespace, ctx: dict) -> None:
    stop, started = threading.Event(), threading.Event()
    got: list[list[int]] = [[] for _ in range(args.tricklers)]

    def run(i: int) -> None:
        got[i] = trickle(base, stop, started)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(args.tricklers)]
    for t in threads:
        t.start()
    started.wait(30)
    time.sleep(2.0)  # every trickler has its headers in and is sending bytes
    honest: list[tuple[int, float]] = []
    deadline = time.perf_counter() + args.slow_seconds
    with httpx.Client(timeout=30) as client:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            try:
                status = client.post(
                    f"{base}/api/search?k=20", files={"file": ("q.jpg", body)}
                ).status_code
            except httpx.HTTPError:
                status = 0
            honest.append((status, (time.perf_counter() - t0) * 1000))
            time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join(timeout=40)
    ok = [ms for s, ms in honest if s == 200]
    sctx = {**ctx, "tricklers": args.tricklers, "seconds": args.slow_seconds}
    emit("load", "slow_honest_p50_ms", round(percentile(ok, 50), 1), "ms", n=len(ok), **sctx)
    emit("load", "slow_honest_p99_ms", round(percentile(ok, 99), 1), "ms", n=len(ok), **sctx)
    emit("load", "slow_honest_max_ms", round(max(ok, default=0), 1), "ms", n=len(ok), **sctx)
    emit("load", "slow_honest_errors", len(honest) - len(ok), "requests", n=len(honest), **sctx)
    statuses = [s for one in got for s in one]
    emit("load", "slow_trickler_408s", statuses.count(408), "responses", **sctx)


def phase_burst(base: str, body: bytes, args: argparse.Namespace, ctx: dict) -> None:
    results: list[tuple[str, float]] = []
    for _ in range(args.bursts):
        results += burst(base, body, args.burst_clients)
        time.sleep(1.0)
    bctx = {**ctx, "bursts": args.bursts, "clients": args.burst_clients}
    n = len(results)
    resets = sum(1 for o, _ in results if o == "reset")
    emit("load", "burst_resets", resets, "requests", n=n, **bctx)
    emit("load", "burst_200", sum(1 for o, _ in results if o == "200"), "requests", n=n, **bctx)
    busy = [ms for o, ms in results if o == "503"]
    emit("load", "burst_503", len(busy), "requests", n=n, **bctx)
    other = n - resets - len(busy) - sum(1 for o, _ in results if o == "200")
    emit("load", "burst_other", other, "requests", n=n, **bctx)
    if busy:
        emit("load", "burst_503_p50_ms", round(percentile(busy, 50), 1), "ms", **bctx)
        emit("load", "burst_503_p99_ms", round(percentile(busy, 99), 1), "ms", **bctx)


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
    ap.add_argument("--tricklers", type=int, default=48, help="slow clients (slow phase)")
    ap.add_argument("--slow-seconds", type=float, default=20.0)
    ap.add_argument("--bursts", type=int, default=3)
    ap.add_argument("--burst-clients", type=int, default=40)
    ap.add_argument(
        "--phase", action="append", choices=PHASES, help="default: rated, overload, swap"
    )
    args = ap.parse_args()
    phases = args.phase or ["rated", "overload", "swap"]

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
    ctx = {"clients": args.clients, "workers": args.workers, "queue_limit": args.queue_limit}
    try:
        with serve(data, env=env, timeout=60, log_dir=work) as base:
            closed_loop(f"{base}/api/search?k=20", body, 2, 3)  # warm-up
            for phase in phases:
                if phase == "swap":
                    phase_swap(base, body, args, ctx, data, (part, full))
                else:
                    {
                        "rated": phase_rated,
                        "overload": phase_overload,
                        "slow": phase_slow,
                        "burst": phase_burst,
                    }[phase](base, body, args, ctx)
    finally:
        note(f"server log: {work / 'server.log'}")
        if args.data is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
