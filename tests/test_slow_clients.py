"""Slow and bursting clients against a real `pixscape serve` on 127.0.0.1.

Raw sockets, so that what the client really sees (a status line, or a reset) is
what is asserted. Every client loop is bounded in count and time and stops itself.
"""

from __future__ import annotations

import concurrent.futures
import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest

from .conftest import Built
from .test_serve_cli import pixscape_serve

HOST = "127.0.0.1"
BOUNDARY = "sl0wcl1ent"
MAX_UPLOAD = 1_000_000
# The server's body cap: the upload cap plus app.MULTIPART_SLACK.
BODY_CAP = MAX_UPLOAD + 64 * 1024
UPLOAD_ROUTES = ("/api/search", "/api/path?target=0", "/api/images")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def multipart(data: bytes, field: str = "file", name: str = "q.png") -> bytes:
    return (
        (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def head(path: str, length: int | None, *extra: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {HOST}"]
    lines.append(f"Content-Type: multipart/form-data; boundary={BOUNDARY}")
    lines.append(
        f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    )
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode()


def read_reply(sock: socket.socket, timeout: float = 60) -> Reply:
    """One whole HTTP response from `sock` (status, headers, Content-Length body)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a whole status line and headers: {data!r}"
        data += chunk
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = top.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the response body"
        body += chunk
    return Reply(int(status_line.split()[1]), headers, body)


def send_like_a_client(sock: socket.socket, headers: bytes, body: bytes) -> None:
    """Headers, then the body in 64 KiB writes, as HTTP clients stream a file; the
    short pause stands for a network on which the body takes a while to arrive."""
    sock.sendall(headers)
    time.sleep(0.05)
    for i in range(0, len(body), 65536):
        sock.sendall(body[i : i + 65536])


def connect(url: str) -> socket.socket:
    port = int(url.rsplit(":", 1)[1])
    return socket.create_connection((HOST, port), timeout=30)


def largest_image(built: Built) -> bytes:
    paths = [built.collection / row.path for row in built.snapshot.rows]
    return max(paths, key=lambda p: p.stat().st_size).read_bytes()


@pytest.fixture(scope="module")
def server(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A small pool (1 worker, 1 waiting: 2 slots) and a long body deadline."""
    env = {
        "PIXSCAPE_WORKERS": "1",
        "PIXSCAPE_QUEUE_LIMIT": "1",
        "PIXSCAPE_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
        "PIXSCAPE_BODY_TIMEOUT": "60",
        "PIXSCAPE_ADMIN_KEY": "admin-key-for-slow-clients",
    }
    log = tmp_path_factory.mktemp("slow") / "server.log"
    with pixscape_serve(built.data_dir, log, env) as url:
        yield url


class Trickler(threading.Thread):
    """POST headers, then one body byte a second, until stopped or `limit` bytes.

    Records the first reply the server sends, if any.
    """

    def __init__(self, url: str, path: str, limit: int = 30) -> None:
        super().__init__(daemon=True)
        self.url, self.path, self.limit = url, path, limit
        self.started_body = threading.Event()
        self.stop = threading.Event()
        self.reply: Reply | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        body = multipart(b"\x89PNG" + b"\0" * 20_000)
        try:
            with connect(self.url) as sock:
                sock.sendall(head(self.path, len(body)))
                for i in range(self.limit):
                    sock.sendall(body[i : i + 1])
                    self.started_body.set()
                    readable, _, _ = select.select([sock], [], [], 1.0)
                    if readable:
                        self.reply = read_reply(sock)
                        return
                    if self.stop.is_set():
                        return
        except OSError as exc:  # recorded: a trickler that is reset has not been answered
            self.error = exc


@pytest.fixture
def tricklers(server: str) -> Iterator[list[Trickler]]:
    # More than the pool's 2 slots, spread over every upload route.
    crowd = [Trickler(server, UPLOAD_ROUTES[i % len(UPLOAD_ROUTES)]) for i in range(8)]
    for t in crowd:
        t.start()
    yield crowd
    for t in crowd:
        t.stop.set()
    for t in crowd:
        t.join(timeout=10)


def test_trickling_clients_cannot_starve_an_honest_search(
    server: str, built: Built, tricklers: list[Trickler]
) -> None:
    for t in tricklers:
        assert t.started_body.wait(timeout=30), "a trickler never got its headers out"
    time.sleep(1.5)  # every trickler's headers have long reached the app
    query = largest_image(built)
    with httpx.Client(base_url=server, timeout=120) as c:
        res = c.post("/api/search", files={"file": ("q.png", query)}, params={"k": 3})
    assert res.status_code == 200, res.text
    assert res.json()["results"], res.text
    # They were all still connected and unanswered: the search went past them.
    assert all(t.is_alive() and t.reply is None and t.error is None for t in tricklers)


def test_a_burst_of_uploads_above_the_pool_size_reads_every_answer(
    server: str, built: Built
) -> None:
    query = multipart(largest_image(built))
    clients = 12  # six times the pool's 2 slots
    gate = threading.Barrier(clients, timeout=60)

    def one(_: int) -> Reply | BaseException:
        try:
            with connect(server) as sock:
                gate.wait()
                send_like_a_client(sock, head("/api/search?k=3", len(query)), query)
                return read_reply(sock)
        except OSError as exc:  # ECONNRESET, EPIPE: the failure this test is about
            return exc

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        outcomes = list(pool.map(one, range(clients)))
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors, errors
    replies = [o for o in outcomes if isinstance(o, Reply)]
    assert {r.status for r in replies} <= {200, 503}, [r.status for r in replies]
    assert any(r.status == 200 for r in replies)
    busy = [r for r in replies if r.status == 503]
    assert busy, "12 at once on 2 slots: some must have been refused"
    for r in busy:
        assert r.headers["retry-after"] == "1" and "busy" in json.loads(r.body)["detail"]


def _stream(sock: socket.socket, total: int) -> Reply:
    """Send `total` body bytes as fast as the server takes them, stopping to read the
    reply as soon as there is one, as a careful client does."""
    chunk = b"\0" * 65536
    sent = 0
    sock.setblocking(False)
    try:
        while sent < total:
            readable, writable, _ = select.select([sock], [sock], [], 30)
            assert readable or writable, "the server neither reads nor answers"
            if readable:
                break
            sent += sock.send(chunk[: total - sent])
    finally:
        sock.setblocking(True)
    return read_reply(sock)


def test_a_body_just_over_the_cap_gets_a_readable_413_and_the_connection_lives(
    server: str, built: Built
) -> None:
    with connect(server) as sock:
        sock.sendall(head("/api/search", BODY_CAP + 200_000))
        reply = _stream(sock, BODY_CAP + 200_000)
        assert reply.status == 413 and "limit" in json.loads(reply.body)["detail"]
        assert reply.headers.get("connection") != "close"
        # Its body was read and dropped, so the same connection serves the next one.
        query = multipart(largest_image(built))
        sock.sendall(head("/api/search?k=3", len(query)) + query)
        assert read_reply(sock).status == 200


def test_a_chunked_body_over_the_cap_gets_a_readable_413(server: str) -> None:
    with connect(server) as sock:
        sock.sendall(head("/api/search", None))
        preamble = multipart(b"")[: -len(f"\r\n--{BOUNDARY}--\r\n")]
        piece = b"\0" * 65536
        for data in [preamble] + [piece] * (BODY_CAP // len(piece) + 2):
            sock.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        sock.sendall(b"0\r\n\r\n")
        reply = read_reply(sock)
        assert reply.status == 413 and "limit" in json.loads(reply.body)["detail"]


def test_a_body_far_over_the_cap_gets_its_413_then_the_connection_closes(server: str) -> None:
    with connect(server) as sock:
        sock.sendall(head("/api/search", 50 * BODY_CAP))
        reply = _stream(sock, 50 * BODY_CAP)
        assert reply.status == 413 and reply.headers["connection"] == "close"


def test_a_trickler_gets_408_once_the_body_deadline_passes(built: Built, tmp_path: Path) -> None:
    env = {"PIXSCAPE_BODY_TIMEOUT": "1"}
    with pixscape_serve(built.data_dir, tmp_path / "server.log", env) as url:
        slow = Trickler(url, "/api/search", limit=20)
        slow.run()  # in this thread: bounded by its 20 bytes, one a second
    assert slow.error is None, slow.error
    assert slow.reply is not None, "never answered: no body deadline"
    assert slow.reply.status == 408 and slow.reply.headers["connection"] == "close"
    assert "within 1 s" in json.loads(slow.reply.body)["detail"]
