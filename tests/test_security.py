"""Access keys, body limits, overload, headers and paths: nothing let in."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import socket
import threading
import time
import unicodedata
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from indexer.snapshot import SnapshotError, current_id
from service.app import create_app
from service.cli import main as pixscape_main
from service.middleware import PAGE_CSP
from service.settings import Settings
from service.state import without_paths

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
        ("GET", "/api/search", {"params": {"q": "cat"}}),
        ("GET", "/api/concepts", {"params": {"prefix": "ca"}}),
        ("GET", "/api/labels", {}),
        ("GET", "/api/filter", {}),
        ("GET", "/api/duplicates", {}),
        ("POST", "/api/export", {"json": {"ids": [0], "format": "csv"}}),
        ("POST", "/api/search/like", {"json": {"ids": [0]}}),
        ("POST", "/api/tour", {"json": {"ids": [0, 5]}}),
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


def test_a_cookie_carries_the_read_key_for_the_pages_images_only(
    keyed: TestClient, built: Built
) -> None:
    keyed.cookies.set("pixscape_key", READ)
    try:
        assert keyed.get("/api/images/0/thumbnail").status_code == 200
        assert keyed.get("/api/atlas/32/0").status_code in (200, 404)  # an <img>, no header
        # Not from another site's page, and never for a POST (the page sends the header).
        cross = keyed.get("/api/images/0/thumbnail", headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status_code == 401
        data = (built.collection / built.snapshot.rows[0].path).read_bytes()
        assert keyed.post("/api/search", files={"file": ("q.png", data)}).status_code == 401
    finally:
        keyed.cookies.clear()
    keyed.cookies.set("pixscape_key", "read%2Dkey-123")  # the page percent-encodes it
    try:
        assert keyed.get("/api/stats").status_code == 200
    finally:
        keyed.cookies.clear()


def test_a_cookie_never_authorises_an_admin_route(keyed: TestClient, built: Built) -> None:
    """A form POST from any other page the browser visits carries the cookie, not a header."""
    row = built.snapshot.rows[0]
    upload = [("files", ("x.png", (built.collection / row.path).read_bytes(), "image/png"))]
    before = sorted(p.relative_to(built.collection) for p in built.collection.rglob("*"))
    keyed.cookies.set("pixscape_key", ADMIN)
    try:
        assert keyed.post("/api/admin/reload").status_code == 401
        forged = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
        assert keyed.post("/api/images", files=upload, headers=forged).status_code == 403
        assert keyed.post("/api/images", files=upload).status_code == 401
        assert keyed.delete(f"/api/images/{row.id}", headers=forged).status_code == 403
        assert keyed.delete(f"/api/images/{row.id}").status_code == 401
    finally:
        keyed.cookies.clear()
    assert sorted(p.relative_to(built.collection) for p in built.collection.rglob("*")) == before
    assert keyed.get(f"/api/images/{row.id}", headers={"X-API-Key": READ}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},  # sandboxed frames and some redirects
        {"Origin": "http://testserver.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://testserver", "Sec-Fetch-Site": "cross-site"},
    ],
)
def test_admin_routes_refuse_cross_site_requests_even_with_the_key(
    keyed: TestClient, headers: dict[str, str]
) -> None:
    for key in ({"X-API-Key": ADMIN}, {"Authorization": f"Bearer {ADMIN}"}):
        res = keyed.post("/api/admin/reload", headers={**key, **headers})
        assert res.status_code == 403 and "cross-site" in res.json()["detail"], res.text


def test_admin_routes_take_same_site_browsers_and_plain_clients(built: Built) -> None:
    settings = Settings(
        data_dir=built.data_dir, admin_key=ADMIN, cors_origins=["https://ok.example"]
    )
    with TestClient(create_app(settings)) as c:
        for extra in (
            {},  # curl, scripts: no Origin, no Sec-Fetch-Site
            {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"},
            {"Origin": "https://ok.example"},  # an origin the operator allowed for CORS
        ):
            res = c.post("/api/admin/reload", headers={"X-API-Key": ADMIN, **extra})
            assert res.status_code == 200, (extra, res.text)


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


# ------------------------------------------------------------ never a 500 for input

# A digit 5 of every script Python knows, plus digits of scripts newer than its
# Unicode tables (Kawi, Nag Mundari: pydantic-core's regex knows them, int() does
# not), look-alikes, and Unicode spaces between ASCII digits.
UNICODE_DIGITS = sorted(
    {chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Nd"} - set("0123456789")
)
ODD_NUMBERS = [
    *(d for d in UNICODE_DIGITS if unicodedata.digit(d) == 5),
    "\U00011f55",  # KAWI DIGIT FIVE (Unicode 15)
    "\U0001e4f5",  # NAG MUNDARI DIGIT FIVE (Unicode 15)
    "1\U00011f50",
    "²",  # superscript: a digit to str.isdigit, not a decimal
    "1\u00a02",  # a no-break space inside a number
    "1\u200b",  # zero-width space: not even whitespace
]
# Unicode spaces around a number: pydantic strips them from an int, the id lists
# refuse them; either way an answer, never a 500.
ODD_SPACES = ["1\u2028", "\u20071", "3,\u00a04", "\u30001"]


def _id_requests(value: str) -> list[tuple[str, str, dict]]:
    """Every route's id and list parameters, each given `value` in turn."""
    q = urllib.parse.quote(value)
    return [
        ("GET", f"/api/images/{q}", {}),
        ("GET", f"/api/images/{q}/similar", {}),
        ("GET", f"/api/images/{q}/thumbnail", {}),
        ("GET", f"/api/images/{q}/file", {}),
        ("GET", "/api/images/0/similar", {"params": {"k": value}}),
        ("GET", "/api/images", {"params": {"offset": value}}),
        ("GET", "/api/images", {"params": {"limit": value}}),
        ("GET", f"/api/atlas/{q}/0", {}),
        ("GET", f"/api/atlas/32/{q}", {}),
        ("GET", "/api/path", {"params": {"source": value, "target": 1}}),
        ("GET", "/api/path", {"params": {"source": 0, "target": value}}),
        ("GET", "/api/path", {"params": {"source": 0, "target": 1, "via": value}}),
        ("GET", "/api/path", {"params": {"source": 0, "target": 1, "via": f"3,{value}"}}),
        ("GET", "/api/path", {"params": {"source": 0, "target": 1, "avoid": value}}),
        ("GET", "/api/path", {"params": {"source": 0, "target": 1, "max_steps": value}}),
        ("POST", "/api/path", {"params": {"source": 0, "target": 1, "via": value}}),
        ("POST", "/api/path", {"params": {"source": value, "target": 1}}),
        ("POST", "/api/search", {"params": {"k": value}}),
        ("DELETE", f"/api/images/{q}", {}),
    ]


def _no_path_in(text: str, *roots: Path) -> None:
    for root in roots:
        for form in {str(root), os.path.realpath(root)}:
            assert form not in text, f"{form} shown in an error body: {text[:300]}"


def test_unicode_digits_in_any_id_parameter_are_a_4xx(built: Built) -> None:
    settings = Settings(data_dir=built.data_dir, admin_key=ADMIN)
    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        c.headers["X-API-Key"] = ADMIN
        seen = 0
        live = c.get("/api/stats").json()["snapshot"]
        for value in ODD_NUMBERS + ODD_SPACES:
            for method, url, kwargs in _id_requests(value):
                if method == "DELETE" and value in ODD_SPACES:
                    continue  # "1\u2028" is image 1 to pydantic: it would really go
                res = c.request(method, url, **kwargs)
                if value in ODD_SPACES:
                    assert res.status_code < 500, (value, method, url, res.status_code)
                else:
                    assert 400 <= res.status_code < 500, (value, method, url, res.status_code)
                assert res.headers["x-content-type-options"] == "nosniff"
                _no_path_in(res.text, built.data_dir.parent)
                seen += 1
        assert seen >= 60 * len(_id_requests("1"))
        assert c.get("/api/stats").json()["snapshot"] == live  # nothing was removed
        # The same parameters in ASCII still work.
        ok = c.get("/api/path", params={"source": 0, "target": 5, "via": " 3 , 4 "})
        assert ok.status_code in (200, 409), ok.text


def _copy_data(built: Built, dest: Path) -> Path:
    """A data folder of its own holding the session snapshot (hard links: cheap,
    and deleting a file here leaves the original whole)."""
    data = dest / "data"
    sid = built.snapshot.id
    shutil.copytree(
        built.data_dir / "snapshots" / sid, data / "snapshots" / sid, copy_function=os.link
    )
    (data / "CURRENT").write_text(sid + "\n")
    return data


SECURITY_HEADERS = ("x-content-type-options", "content-security-policy", "referrer-policy")


def test_a_500_carries_the_security_headers_and_no_path(built: Built, tmp_path: Path) -> None:
    # A real internal error: a snapshot whose thumbnail file has gone missing.
    data = _copy_data(built, tmp_path)
    row = built.snapshot.rows[0]
    thumb = built.snapshot.thumbnail_path(row.id).relative_to(built.snapshot.path)
    (data / "snapshots" / built.snapshot.id / thumb).unlink()
    with TestClient(create_app(Settings(data_dir=data)), raise_server_exceptions=False) as c:
        res = c.get(f"/api/images/{row.id}/thumbnail")
        assert res.status_code == 500
        for name in SECURITY_HEADERS:
            assert name in res.headers, (name, dict(res.headers))
        assert res.headers["content-security-policy"] == PAGE_CSP
        assert res.json() == {"detail": "internal server error"}
        _no_path_in(res.text, tmp_path, built.data_dir.parent)
        assert c.get(f"/api/images/{built.snapshot.rows[1].id}/thumbnail").status_code == 200


def _expect_broken(data: Path, roots: tuple[Path, ...], leaked: str | None = None) -> str:
    """The service answers 503 without any path, and keeps answering."""
    with TestClient(create_app(Settings(data_dir=data)), raise_server_exceptions=False) as c:
        for url in ("/api/stats", "/api/images/0", "/api/maps"):
            res = c.get(url)
            assert res.status_code == 503, (url, res.status_code, res.text)
            assert res.headers["retry-after"]
            for name in SECURITY_HEADERS:
                assert name in res.headers
            _no_path_in(res.text, *roots)
            if leaked:
                assert leaked not in res.text
        assert c.get("/api/health").status_code == 200
        detail: str = c.get("/api/stats").json()["detail"]
        return detail


def test_a_broken_snapshot_is_a_503_without_paths(built: Built, tmp_path: Path) -> None:
    data = _copy_data(built, tmp_path)
    (data / "snapshots" / built.snapshot.id / "vectors.npy").unlink()
    detail = _expect_broken(data, (tmp_path, built.data_dir.parent))
    assert built.snapshot.id in detail and "broken" in detail
    # The reason is kept, naming the file relative to the data folder.
    assert f"snapshots/{built.snapshot.id}/vectors.npy" in detail, detail


def test_error_texts_lose_their_absolute_paths(tmp_path: Path) -> None:
    data = tmp_path / "data"
    text = f"x: [Errno 2] No such file: '{data}/snapshots/a/vectors.npy' (also /etc/passwd)"
    assert without_paths(text, data) == (
        "x: [Errno 2] No such file: 'snapshots/a/vectors.npy' (also <path>)"
    )
    assert without_paths("a/b, N/A and 2/3", data) == "a/b, N/A and 2/3"


def _plant(kind: str, data: Path, real: Path, outside: Path) -> str:
    """Make CURRENT name something that is not a plain snapshot folder: what it names."""
    snapshots = data / "snapshots"
    fake = "20260101T000000Z-0badf00d"  # a well-formed id
    if kind == "dotdot":
        value = "../x"
    elif kind == "dotdot-to-real":
        value = os.path.relpath(real, snapshots)  # ../../outside/data/snapshots/<id>
    elif kind == "absolute":
        value = str(real)
    elif kind == "symlink-out":
        os.symlink(real, snapshots / fake)  # a whole, valid snapshot: outside snapshots/
        value = fake
    elif kind == "not-a-directory":
        (snapshots / fake).write_text("not a folder")
        value = fake
    elif kind == "missing":
        value = fake
    elif kind == "hidden-temp":
        (snapshots / ".tmp-20260101T000000Z-1").mkdir()
        value = ".tmp-20260101T000000Z-1"
    elif kind == "current-is-a-symlink":
        target = outside / "elsewhere"
        target.write_text(real.name + "\n")
        (data / "CURRENT").unlink()
        os.symlink(target, data / "CURRENT")
        return real.name
    elif kind == "binary":
        (data / "CURRENT").write_bytes(b"\xff\xfe" * 1000 + b"\n")
        return "\ufffd"
    else:
        raise AssertionError(kind)
    (data / "CURRENT").write_text(value + "\n")
    return value


CURRENT_KINDS = [
    "dotdot",
    "dotdot-to-real",
    "absolute",
    "symlink-out",
    "not-a-directory",
    "missing",
    "hidden-temp",
    "current-is-a-symlink",
    "binary",
]


@pytest.mark.parametrize("kind", CURRENT_KINDS)
def test_current_must_name_a_plain_snapshot_folder(
    built: Built, tmp_path: Path, kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The real snapshot sits outside this data folder's snapshots/, whole and valid.
    outside = tmp_path / "outside"
    real = _copy_data(built, outside) / "snapshots" / built.snapshot.id
    data = tmp_path / "data"
    (data / "snapshots").mkdir(parents=True)
    (data / "CURRENT").write_text("")
    named = _plant(kind, data, real, outside / "data")
    before = (data / "CURRENT").read_bytes()

    detail = _expect_broken(data, (tmp_path, built.data_dir.parent), leaked=named)
    assert "CURRENT" in detail
    with pytest.raises(SnapshotError, match="CURRENT"):
        current_id(data)

    # The indexer refuses too, plainly, before any work and without touching CURRENT.
    assert pixscape_main(["index", str(built.collection), "--data", str(data), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "pixscape index:" in err and "CURRENT" in err and "Traceback" not in err
    assert (data / "CURRENT").read_bytes() == before
    assert sorted(p.name for p in (data / "snapshots").iterdir() if not p.name.startswith(".")) == (
        [] if kind not in ("symlink-out", "not-a-directory") else ["20260101T000000Z-0badf00d"]
    )


def test_an_empty_or_absent_current_means_no_snapshot_yet(built: Built, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "snapshots").mkdir(parents=True)
    assert current_id(data) is None
    (data / "CURRENT").write_text("\n")
    assert current_id(data) is None
    detail = _expect_broken(data, (tmp_path,))
    assert "no snapshot" in detail
    # And a good one is followed.
    good = _copy_data(built, tmp_path / "good")
    assert current_id(good) == built.snapshot.id
