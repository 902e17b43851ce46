"""The map endpoints and "you are here", through a real ASGI client over the built snapshot."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from service.app import create_app
from service.routes.maps import MAGIC, decode_binary
from service.settings import Settings

from .conftest import Built


@pytest.fixture(scope="module")
def client(built: Built) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=built.data_dir))) as c:
        yield c


def test_list_maps_gives_layouts_quality_and_clusters(client: TestClient, built: Built) -> None:
    body = client.get("/api/maps").json()
    assert body["snapshot"] == built.snapshot.id and body["count"] == built.snapshot.count
    assert [m["name"] for m in body["layouts"]] == ["tsne", "umap", "grid"]
    for m in body["layouts"]:
        assert m["url"] == f"/api/maps/{m['name']}"
        assert 0.5 < m["quality"]["trustworthiness"] <= 1.0
        assert m["params"]["seed"] == 0
    grid = next(m for m in body["layouts"] if m["name"] == "grid")["grid"]
    assert grid["cols"] * grid["rows"] >= built.snapshot.count
    assert len(body["clusters"]) >= 2 and body["atlas_url"] == "/api/atlas"


@pytest.mark.parametrize("name", ["tsne", "umap", "grid"])
def test_binary_map_round_trips(client: TestClient, built: Built, name: str) -> None:
    res = client.get(f"/api/maps/{name}")
    assert res.status_code == 200
    assert res.headers["content-type"] == "application/octet-stream"
    assert res.content[:8] == MAGIC
    header, cols = decode_binary(res.content)
    snap = built.snapshot
    assert header["layout"] == name and header["count"] == snap.count
    assert all(c["offset"] % 8 == 0 for c in header["columns"])
    assert np.array_equal(cols["id"], np.arange(snap.count))
    assert np.array_equal(cols["x"], snap.layouts[name][:, 0])
    assert np.array_equal(cols["y"], snap.layouts[name][:, 1])
    assert snap.clusters is not None and np.array_equal(cols["cluster"], snap.clusters)
    assert len(header["clusters"]) == len(snap.maps["clusters"])
    # 14 bytes per point plus a small header.
    assert len(res.content) < 14 * snap.count + 16_000
    again = client.get(f"/api/maps/{name}", headers={"If-None-Match": res.headers["etag"]})
    assert again.status_code == 304


def test_json_map_carries_the_same_columns(client: TestClient, built: Built) -> None:
    body = client.get("/api/maps/umap", params={"format": "json"}).json()
    assert body["format"] == "pixscape-map/1"
    cols = {c["name"]: (c["dtype"], base64.b64decode(c["data"])) for c in body["columns"]}
    x = np.frombuffer(cols["x"][1], "<f4")
    assert cols["x"][0] == "float32"
    assert np.array_equal(x, built.snapshot.layouts["umap"][:, 0])


def test_unknown_layouts_are_404_and_bad_names_422(client: TestClient) -> None:
    res = client.get("/api/maps/pca")
    assert res.status_code == 404 and "tsne, umap, grid" in res.json()["detail"]
    assert client.get("/api/maps/UMAP..").status_code == 422
    assert client.get("/api/maps/umap", params={"format": "xml"}).status_code == 422


def test_openapi_documents_the_map_format(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/api/maps/{layout}"]["get"]
    content = op["responses"]["200"]["content"]
    assert content["application/octet-stream"]["schema"]["format"] == "binary"
    assert content["application/json"]["schema"]["$ref"] == "#/components/schemas/MapHeader"
    assert "MapHeader" in doc["components"]["schemas"] and "PXMAP1" in op["description"]
    assert "placement" in doc["components"]["schemas"]["SearchResponse"]["properties"]
    assert {"/api/maps", "/api/atlas", "/api/atlas/{cell}/{sheet}"} <= set(doc["paths"])


def test_atlas_index_and_sheets(client: TestClient, built: Built) -> None:
    index = client.get("/api/atlas").json()
    assert index["count"] == built.snapshot.count and index["mime"] == "image/webp"
    assert [s["cell"] for s in index["sizes"]] == [32, 128]
    for size in index["sizes"]:
        assert sum(s["count"] for s in size["sheets"]) == built.snapshot.count
        sheet = size["sheets"][-1]
        res = client.get(sheet["url"])
        assert res.status_code == 200 and res.headers["content-type"] == "image/webp"
        assert "immutable" in res.headers["cache-control"]
        im = Image.open(io.BytesIO(res.content))
        assert im.size == (sheet["width"], sheet["height"]) and im.format == "WEBP"
    assert client.get("/api/atlas/64/0").status_code == 404
    assert client.get("/api/atlas/32/99").status_code == 404
    assert client.get("/api/atlas/32/-1").status_code == 422


@pytest.mark.parametrize("pick, k", [(3, 10), (-7, 1)])
def test_search_places_a_query_near_its_own_position(
    client: TestClient, built: Built, pick: int, k: int
) -> None:
    snap = built.snapshot
    row = snap.rows[pick]
    data = (built.collection / row.path).read_bytes()
    res = client.post("/api/search", files={"file": ("q.bin", data)}, params={"k": k})
    assert res.status_code == 200, res.text
    placement = res.json()["placement"]
    assert set(placement) == {"tsne", "umap", "grid"}
    for name, point in placement.items():
        own = snap.layouts[name][row.id]
        cell = snap.maps["layouts"]["grid"]["grid"]["cell"]
        assert abs(point["x"] - own[0]) < cell and abs(point["y"] - own[1]) < cell, name


def test_a_new_image_is_placed_among_its_neighbours(client: TestClient, built: Built) -> None:
    snap = built.snapshot
    row = next(r for r in snap.rows if r.label == "photos")
    im = Image.open(built.collection / row.path).convert("RGB")
    im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((300, 220))  # not indexed
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=70)
    res = client.post("/api/search", files={"file": ("q.jpg", buf.getvalue())}, params={"k": 5})
    body = res.json()
    top = [r["id"] for r in body["results"][:3]]
    for name, point in body["placement"].items():
        pos = snap.layouts[name][top]
        lo, hi = pos.min(axis=0) - 0.1, pos.max(axis=0) + 0.1
        assert lo[0] <= point["x"] <= hi[0] and lo[1] <= point["y"] <= hi[1], name


def test_map_routes_need_the_read_key_when_one_is_set(built: Built) -> None:
    settings = Settings(data_dir=built.data_dir, read_key="s3cret")
    urls = ["/api/maps", "/api/maps/umap", "/api/atlas", "/api/atlas/32/0"]
    with TestClient(create_app(settings)) as c:
        for url in urls:
            assert c.get(url).status_code == 401, url
            assert c.get(url, headers={"X-API-Key": "s3cret"}).status_code == 200, url
