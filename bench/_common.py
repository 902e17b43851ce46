"""Shared helpers for the benchmarks in bench/ (not a test module, not product code)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx2 as httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# ../shared/data/photos relative to the repository root.
DEFAULT_PHOTOS = (ROOT / ".." / "shared" / "data" / "photos").resolve()
MODEL_ID = "efficientnet-lite0"
HOST = "127.0.0.1"

T = TypeVar("T")


def emit(bench: str, figure: str, value: float | int | None, unit: str, **extra: Any) -> None:
    """One machine-readable line per figure on stdout."""
    line: dict[str, Any] = {"bench": bench, "figure": figure, "value": value, "unit": unit}
    line.update(extra)
    line.setdefault("cpus", os.cpu_count())
    # Other work on a 2-core machine skews every figure: record how busy it was.
    line.setdefault("loadavg_1m", loadavg())
    print(json.dumps(line), flush=True)


def note(message: str) -> None:
    """Human-readable progress goes to stderr, so stdout stays JSON lines only."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def photo_files(folder: Path, limit: int | None = None) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return files[:limit] if limit else files


def limited_copy(folder: Path, limit: int | None, dest: Path) -> Path:
    """`folder` itself, or (with a limit) a copy of its first `limit` files.

    A copy, not symlinks: the scanner rightly refuses links that leave the folder.
    """
    if not limit:
        return folder
    dest.mkdir(parents=True, exist_ok=True)
    for p in photo_files(folder, limit):
        shutil.copy2(p, dest / p.name)
    return dest


def export_models(models_dir: Path) -> tuple[float, Path]:
    """Export the ONNX model once into `models_dir`; returns (seconds, onnx path)."""
    from indexer.models import ensure_onnx, get_spec

    seconds, (path, _fp) = timed(lambda: ensure_onnx(get_spec(MODEL_ID), models_dir))
    return seconds, path


def seed_models(src_models: Path, data_dir: Path) -> None:
    """Pre-populate data_dir/models so build() skips the export."""
    shutil.copytree(src_models, data_dir / "models")


def loadavg() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")


# ---------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pixscape_cli() -> list[str]:
    exe = Path(sys.executable).with_name("pixscape")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "service.cli"]


def wait_healthy(base: str, proc: subprocess.Popen, log_path: Path, timeout: float) -> float:
    """Seconds until GET /api/health says ok; raises with the log if the server dies or stalls."""
    t0 = time.perf_counter()
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited ({proc.returncode}):\n{log_path.read_text()}")
        try:
            r = httpx.get(f"{base}/api/health", timeout=2.0)
            if r.status_code == 200 and r.json().get("status") == "ok":
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not healthy after {timeout}s:\n{log_path.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    """Terminate, then kill after 10 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class ServerURL(str):
    """The base URL of a running server; `ready_s` is how long /api/health took to say ok
    after the process was started, `pid` the server's process id."""

    ready_s: float
    pid: int

    def __new__(cls, base: str, ready_s: float, pid: int) -> ServerURL:
        url = super().__new__(cls, base)
        url.ready_s = ready_s
        url.pid = pid
        return url


@contextlib.contextmanager
def serve(
    data: Path,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 60.0,
    log_dir: Path | None = None,
) -> Iterator[ServerURL]:
    """Run `pixscape serve --data DATA` on a free loopback port until the block ends.

    Yields the base URL (a ServerURL: its `ready_s` is the start-up time) once
    /api/health says ok. `env` is added to this process's environment. The output
    goes to server.log in a temporary folder (or in `log_dir`, which is kept).
    The server is always stopped: terminated, then killed after 10 s.
    """
    with contextlib.ExitStack() as stack:
        if log_dir is None:
            log_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pixscape-")))
        log_path = log_dir / "server.log"
        port = free_port()
        base = f"http://{HOST}:{port}"
        cmd = [*pixscape_cli(), "serve", "--data", str(data), "--host", HOST, "--port", str(port)]
        note(f"starting pixscape serve on {base}")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
            )
        try:
            ready = wait_healthy(base, proc, log_path, timeout)
            yield ServerURL(base, ready, proc.pid)
        finally:
            stop(proc)
            note(f"server stopped (exit {proc.returncode})")
