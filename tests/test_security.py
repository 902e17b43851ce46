"""Access keys, body limits, overload, headers and paths: nothing let in."""

from __future__ import annotations

import concurrent.futures
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from service.app import create_app
from service.middleware import PAGE_CSP
from service.settings import Settings

from .conftest import Built

READ, ADMIN = "read-key-123", "admin-key-456"


def _routes(built: Built) -> list[tuple[str, str, dict]]:
    """(method, path, kwargs) for every API route, with valid arguments."""
    row = built.snapshot.rows[0]
    upload = {"files": {"file": ("q.png", (built.collection / row.path).read_bytes())}}
    return [
        ("GET", "/api/stats", {}),
        ("GET", "/api/images", {}),
        ("GET", "/api/images/0", {}),
        ("GET", "/api/images/0/similar", {}),
        ("GET", "/api/images/0/thumbnail", {}),
        ("GET", "/api/images/0/file", {}),
        ("POST", "/api/search", upload),
        ("GET", "/api/maps", {}),
        ("GET", "/api/maps/umap", {}),
        ("GET", "/api/atlas", {}),
        ("GET", "/api/atlas/32/0", {}),
        ("GET", "/api/path", {"params": {"source": 0, "target": 5}}),
        (
            "POST",
            "/api/path",
            {
                "params": {"target": 5},
                "files": {"source_file": ("q.png", (built.collection / row.path).read_bytes())},
            },
        ),
    ]


@pytest.fixture(scope="module")
def keyed(built: Built) -> Iterator[TestClient]:
    settings = Settings(data_dir=built.data_dir, read_key=READ, admin_key=ADMIN)
    with TestClient(create_app(settings)) as c:
        yield c


def test_every_api_route_against_no_key_read_key_and_admin_key(
    keyed: TestClient, built: Built
) -> None:
    paths = {p for p in keyed.get("/openapi.json", headers={"X-API-Key": READ}).json()["paths"]}
    covered = {p for _, p, _ in _routes(built)} | {"/api/health", "/api/admin/reload"}
    templated = {
        p.replace("{image_id}", "0").replace("{layout}", "umap").replace("{cell}/{sheet}", "32/0")
        for p in paths
    }
    assert templated <= covered, f"routes without an access test: {templated - covered}"

    for method, path, kwargs in _routes(built):
        assert keyed.request(method, path, **kwargs).status_code == 401, path
        wrong = keyed.request(method, path, headers={"X-API-Key": "nope"}, **kwargs)
        assert wrong.status_code == 401, path
        for key in (READ, ADMIN):
            ok = keyed.request(method, path, headers={"X-API-Key": key}, **kwargs)
            assert ok.status_code == 200, (path, ok.text)
        bearer = keyed.request(method, path, headers={"Authorization": f"Bearer {READ}"}, **kwargs)
        assert bearer.status_code == 200
    assert keyed.get("/api/health").status_code == 200  # open for healthchecks

    reload_ = "/api/admin/reload"
    assert keyed.post(reload_).status_code == 401
    assert keyed.post(reload_, headers={"X-API-Key": READ}).status_code == 401
    assert keyed.post(reload_, headers={"X-API-Key": ADMIN}).status_code == 200


def test_a_cookie_carries_the_key_for_the_page(keyed: TestClient) -> None:
    keyed.cookies.set("pixscape_key", READ)
    try:
        assert keyed.get("/api/images/0/thumbnail").status_code == 200
    finally:
        keyed.cookies.clear()


def test_admin_routes_are_off_without_an_admin_key(built: Built) -> None:
    with TestClient(create_app(Settings(data_dir=built.data_dir))) as c:
        res = c.post("/api/admin/reload", headers={"X-API-Key": "anything"})
        assert res.status_code == 403 and "PIXSCAPE_ADMIN_KEY" in res.json()["detail"]
        assert c.get("/api/stats").status_code == 200  # reads open without a read key


def test_security_headers_and_closed_cors(built: Built) -> None:
    with TestClient(create_app(Settings(data_dir=built.data_dir))) as c:
        for url in ("/", "/api/stats", "/api/images/0/thumbnail", "/api/nope"):
            res = c.get(url, headers={"Origin": "https://evil.example"})
            assert res.headers["x-content-type-options"] == "nosniff", url
            assert res.headers["content-security-policy"] == PAGE_CSP, url
            assert "access-control-allow-origin" not in res.headers, url
        pre = c.options(
            "/api/search",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert "access-control-allow-origin" not in pre.headers
    allowed = Settings(data_dir=built.data_dir, cors_origins=["https://ok.example"])
    with TestClient(create_app(allowed)) as c:
        res = c.get("/api/stats", headers={"Origin": "https://ok.example"})
        assert res.headers["access-control-allow-origin"] == "https://ok.example"
        res = c.get("/api/stats", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in res.headers


def test_no_path_reaches_outside_the_collection(built: Built, tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=built.data_dir))) as c:
        for url in [
            "/api/images/..%2F..%2F..%2Fetc%2Fpasswd/file",
            "/api/images/0%2F..%2F..%2Fetc%2Fpasswd/file",
            "/api/images/0/../../../../etc/passwd",
            "/..%2F..%2Fetc%2Fpasswd",
            "/%2e%2e/%2e%2e/etc/passwd",
            "/docs-assets/..%2F..%2F..%2Fetc%2Fpasswd",
        ]:
            res = c.get(url)
            assert res.status_code in (404, 422), url
            assert "root:" not in res.text, url


def test_a_symlink_planted_after_indexing_is_not_followed_out(built: Built, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    row = built.snapshot.rows[1]
    target = built.collection / row.path
    original = target.read_bytes()
    target.unlink()
    os.symlink(secret, target)
    try:
        with TestClient(create_app(Settings(data_dir=built.data_dir))) as c:
            res = c.get(f"/api/images/{row.id}/file")
            assert res.status_code == 404 and "root:" not in res.text
    finally:
        target.unlink()
        target.write_bytes(original)


# ------------------------------------------------------------ a real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(built: Built, request: pytest.FixtureRequest) -> Iterator[str]:
    overrides = getattr(request, "param", {})
    settings = Settings(data_dir=built.data_dir, max_upload_bytes=100_000, **overrides)
    port = _free_port()
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline and thread.is_alive(), "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


def test_oversized_bodies_are_cut_off_while_streaming(server: str, built: Built) -> None:
    big = b"\xff\xd8" + os.urandom(400_000)
    with httpx.Client(base_url=server, timeout=30) as c:
        declared = c.post("/api/search", files={"file": ("x.jpg", big)})
        assert declared.status_code == 413 and "limit" in declared.json()["detail"]

        def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding chunked
            boundary = b"--b0undary\r\n"
            yield boundary + b'Content-Disposition: form-data; name="file"; filename="x.jpg"\r\n'
            yield b"Content-Type: image/jpeg\r\n\r\n"
            for _ in range(200):
                yield os.urandom(16_384)

        res = c.post(
            "/api/search",
            content=chunks(),
            headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
        )
        assert res.status_code == 413
        # The server is still fine afterwards.
        first = (built.collection / built.snapshot.rows[0].path).read_bytes()
        ok = c.post("/api/search", files={"file": ("q.png", first)})
        assert ok.status_code == 200


@pytest.mark.parametrize("server", [{"workers": 1, "queue_limit": 0}], indirect=True)
def test_overload_answers_503_with_retry_after(server: str, built: Built) -> None:
    data = (built.collection / built.snapshot.rows[0].path).read_bytes()

    def one(_: int) -> httpx.Response:
        with httpx.Client(base_url=server, timeout=60) as c:
            return c.post("/api/search", files={"file": ("q.png", data)})

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(one, range(24)))
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    assert 200 in codes and 503 in codes, codes
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["detail"]


def test_a_blank_key_never_switches_access_on(
    built: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIXSCAPE_ADMIN_KEY", "")  # an empty variable means unset
    monkeypatch.setenv("PIXSCAPE_DATA_DIR", str(built.data_dir))
    settings = Settings()
    assert settings.admin_key is None
    with pytest.raises(ValueError, match="blank"):
        Settings(data_dir=built.data_dir, admin_key="  ")
    with TestClient(create_app(settings)) as c:
        c.cookies.set("pixscape_key", "")
        assert c.post("/api/admin/reload").status_code == 403
