"""The HTTP service, through a real ASGI client over a real snapshot."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from indexer.build import build
from service.app import create_app
from service.settings import Settings

from .conftest import Built, fresh_data_dir, make_collection


@pytest.fixture(scope="module")
def client(built: Built) -> Iterator[TestClient]:
    settings = Settings(data_dir=built.data_dir, max_upload_bytes=2_000_000)
    with TestClient(create_app(settings)) as c:
        yield c


def _upload(client: TestClient, data: bytes, name: str = "q.jpg", **params: object):
    return client.post("/api/search", files={"file": (name, data)}, params=params)


def test_health_and_stats(client: TestClient, built: Built) -> None:
    assert client.get("/api/health").json() == {"status": "ok", "snapshot": built.snapshot.id}
    stats = client.get("/api/stats").json()
    assert stats["snapshot"] == built.snapshot.id
    assert stats["count"] == built.snapshot.count
    assert stats["dim"] == 1280 and stats["model"]["id"] == "efficientnet-lite0"
    assert stats["index_type"] == "Flat"


@pytest.mark.parametrize("pick", [0, 17, -1])
def test_search_with_an_indexed_image_returns_itself_first(
    client: TestClient, built: Built, pick: int
) -> None:
    row = built.snapshot.rows[pick]
    data = (built.collection / row.path).read_bytes()
    res = _upload(client, data, name="whatever.bin", k=5)
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["snapshot"] == built.snapshot.id and body["k"] == 5
    assert len(body["results"]) == 5
    top = body["results"][0]
    assert top["id"] == row.id and top["path"] == row.path and top["label"] == row.label
    assert top["score"] == pytest.approx(1.0, abs=1e-3)
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert body["took_ms"] > 0
    assert body["query"]["format"] in {"PNG", "JPEG"}
    assert client.get(top["thumbnail_url"]).status_code == 200
    assert client.get(top["image_url"]).content == data


def test_search_defaults_to_k_20(client: TestClient, built: Built) -> None:
    data = (built.collection / built.snapshot.rows[3].path).read_bytes()
    assert len(_upload(client, data).json()["results"]) == 20


def test_similar_excludes_the_image_itself(client: TestClient, built: Built) -> None:
    res = client.get("/api/images/4/similar", params={"k": 7})
    assert res.status_code == 200
    body = res.json()
    ids = [r["id"] for r in body["results"]]
    assert len(ids) == 7 and 4 not in ids and body["query"]["id"] == 4
    assert all(-1 <= r["score"] <= 1.0001 for r in body["results"])


def test_image_metadata_thumbnail_and_file(client: TestClient, built: Built) -> None:
    row = built.snapshot.rows[2]
    meta = client.get("/api/images/2").json()
    assert meta["path"] == row.path and meta["sha256"] == row.sha256
    assert (meta["width"], meta["height"]) == (row.width, row.height) and meta["format"] == "PNG"

    thumb = client.get(meta["thumbnail_url"])
    assert thumb.headers["content-type"] == "image/jpeg"
    assert "immutable" in thumb.headers["cache-control"]
    assert thumb.headers["x-content-type-options"] == "nosniff"
    with Image.open(io.BytesIO(thumb.content)) as im:
        assert max(im.size) <= 256

    plain = client.get("/api/images/2/thumbnail")
    assert plain.headers["cache-control"] == "no-cache"
    original = client.get(meta["image_url"])
    assert original.headers["content-type"] == "image/png"
    assert original.content == (built.collection / row.path).read_bytes()


@pytest.mark.parametrize(
    "url",
    [
        "/api/images/999999",
        "/api/images/999999/similar",
        "/api/images/999999/thumbnail",
        "/api/images/999999/file",
    ],
)
def test_unknown_ids_are_404(client: TestClient, url: str) -> None:
    res = client.get(url)
    assert res.status_code == 404
    assert "no image with id 999999" in res.json()["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/images/-1",
        "/api/images/abc",
        "/api/images/1/similar?k=0",
        "/api/images/1/similar?k=100000",
        "/api/images/..%2F..%2Fetc%2Fpasswd/file",
    ],
)
def test_bad_parameters_are_422(client: TestClient, url: str) -> None:
    assert client.get(url).status_code in (404, 422)
    assert client.get(url).status_code != 500


def test_bad_k_on_search_is_422(client: TestClient, built: Built) -> None:
    data = (built.collection / built.snapshot.rows[0].path).read_bytes()
    for k in (0, -3, 10_000, "many"):
        assert _upload(client, data, k=k).status_code == 422


def test_uploads_that_are_not_images(client: TestClient, built: Built) -> None:
    res = _upload(client, b"just some text, named like a photo", name="photo.jpg")
    assert res.status_code == 415 and "not a recognised image" in res.json()["detail"]
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"></svg>'
    assert _upload(client, svg, name="x.png").status_code == 415
    assert _upload(client, b"").status_code == 400
    png = (built.collection / built.snapshot.rows[0].path).read_bytes()
    res = _upload(client, png[: len(png) // 2])
    assert res.status_code == 400 and "truncated" in res.json()["detail"]
    assert client.post("/api/search").status_code == 422  # no file at all


def test_oversized_upload_is_413(client: TestClient) -> None:
    res = _upload(client, b"\xff\xd8" + b"\0" * 2_100_000)
    assert res.status_code == 413 and "limit" in res.json()["detail"]


def test_page_docs_and_openapi(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "pixscape" in page.text
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()  # works offline
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in [
        "/api/search",
        "/api/images/{image_id}",
        "/api/images/{image_id}/similar",
        "/api/images/{image_id}/thumbnail",
        "/api/images/{image_id}/file",
        "/api/health",
        "/api/stats",
    ]:
        assert path in paths, path


def test_no_snapshot_yet_is_503(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path))) as c:
        assert c.get("/api/health").json()["status"] == "no snapshot"
        res = c.get("/api/stats")
        assert res.status_code == 503 and "pixscape index" in res.json()["detail"]


def test_a_new_snapshot_is_picked_up_without_restart(tmp_path: Path, models_dir: Path) -> None:
    collection = make_collection(tmp_path / "collection", photos=5)
    data = fresh_data_dir(tmp_path, models_dir)
    first = build(collection, data)
    settings = Settings(data_dir=data, reload_interval_s=0.1, admin_key="admin-secret")
    with TestClient(create_app(settings)) as c:
        assert c.get("/api/stats").json()["count"] == first.indexed
        shutil.rmtree(collection / "photos")
        second = build(collection, data)
        deadline = time.monotonic() + 10
        while c.get("/api/stats").json()["snapshot"] != second.snapshot_id:
            assert time.monotonic() < deadline, "the service never swapped snapshots"
            time.sleep(0.05)
        assert c.get("/api/stats").json()["count"] == first.indexed - 5
        # A corrupt snapshot is refused and the live one keeps serving.
        (data / "snapshots" / second.snapshot_id / "vectors.npy").write_bytes(b"broken")
        third_dir = data / "snapshots" / "20990101T000000Z-deadbeef"
        shutil.copytree(data / "snapshots" / second.snapshot_id, third_dir)
        (data / "CURRENT").write_text(third_dir.name + "\n")
        res = c.post("/api/admin/reload", headers={"X-API-Key": "admin-secret"}).json()
        assert res["swapped"] is False and "checksum" in res["error"]
        assert c.get("/api/stats").json()["snapshot"] == second.snapshot_id


def test_the_service_imports_no_torch() -> None:
    code = (
        "import sys, service.app, service.routes.search, indexer.snapshot;"
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
