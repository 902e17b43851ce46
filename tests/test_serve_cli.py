"""`pixscape serve` as a user runs it: a real subprocess on 127.0.0.1.

The URL it prints is true (the port accepts connections the moment the line
appears) and a busy port is one clear line and exit code 2, not a traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest

from .conftest import ROOT, Built

URL_LINE = re.compile(r"at (http://127\.0\.0\.1:(\d+))/ ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_command(data_dir: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "service.cli", "serve", "--data", str(data_dir)] + [
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


def _first_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The first line the server prints on stdout (without blocking past `timeout`)."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            assert left > 0 and sel.select(left), f"no URL line after {timeout}s"
            chunk = os.read(proc.stdout.fileno(), 1)
            assert chunk, f"server exited ({proc.wait()}) before printing its URL"
            line += chunk
    return line.decode()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


@contextlib.contextmanager
def started(
    data_dir: Path, log: Path, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`pixscape serve` running until the block ends: (the URL it printed, process).

    Yields as soon as the URL line is out; the caller decides what to check then.
    """
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            serve_command(data_dir, free_port() if port is None else port),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
    try:
        match = URL_LINE.search(_first_line(proc, timeout=120))
        assert match, "the first line names no URL"
        yield match.group(1), proc
    finally:
        _stop(proc)


@contextlib.contextmanager
def pixscape_serve(data_dir: Path, log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`pixscape serve` on a free port, healthy, until the block ends: its base URL."""
    with started(data_dir, log, env) as (url, proc):
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"server exited: {log.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"server not healthy: {log.read_text()}"
            time.sleep(0.1)
        yield url


@pytest.mark.parametrize("port", ["free", "0"])
def test_the_url_is_printed_once_the_port_takes_connections(
    built: Built, tmp_path: Path, port: str
) -> None:
    chosen = free_port() if port == "free" else 0
    with started(built.data_dir, tmp_path / "err.log", port=chosen) as (url, proc):
        # At once: a URL printed before the bind (or naming port 0) refuses this.
        real = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", real), timeout=10):
            pass
        assert real != 0 and (chosen == 0 or real == chosen)
        # And it is this server that answers there.
        res = httpx.get(f"{url}/api/health", timeout=120)
        assert res.status_code == 200 and proc.poll() is None


def test_a_busy_port_is_one_clear_line_and_exit_code_2(built: Built) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            serve_command(built.data_dir, port),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"port {port}" in lines[0] and "--port" in lines[0] and "in use" in lines[0]
    assert "serving" not in done.stdout  # no URL for a server that is not there
