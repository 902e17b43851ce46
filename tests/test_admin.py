"""Adding and removing images through the admin API, without a rebuild."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from indexer.build import build
from indexer.snapshot import open_snapshot
from service.app import create_app
from service.routes.maps import decode_binary
from service.settings import Settings

from .conftest import fresh_data_dir, make_collection, sample_photos

ADMIN, READ = "admin-key-789", "read-key-789"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("admin")
    collection = make_collection(base / "collection", photos=10)
    data = fresh_data_dir(base, models_dir)
    build(collection, data)
    settings = Settings(data_dir=data, admin_key=ADMIN, read_key=READ, reload_interval_s=3600)
    with TestClient(create_app(settings)) as client:
        client.headers["X-API-Key"] = ADMIN
        yield {"client": client, "collection": collection, "data": data}


def photo(i: int) -> bytes:
    return sample_photos()[-1 - i].read_bytes()  # photos the collection lacks


def test_an_added_image_is_searchable_and_on_the_map_at_once(site: dict) -> None:
    client: TestClient = site["client"]
    before = open_snapshot(site["data"])
    res = client.post("/api/images", files=[("files", ("new.jpg", photo(0), "image/jpeg"))])
    assert res.status_code == 201, res.text
    body = res.json()
    (added,) = body["images"]
    assert added["id"] > int(before.ids.max()) and added["label"] == "uploads"
    assert added["path"].startswith("uploads/") and added["path"].endswith(".jpg")
    assert (site["collection"] / added["path"]).read_bytes() == photo(0)
    assert client.get("/api/stats").json()["snapshot"] == body["snapshot"]

    found = client.post("/api/search?k=3", files={"file": ("q.jpg", photo(0), "image/jpeg")})
    top = found.json()["results"][0]
    assert top["id"] == added["id"] and top["score"] > 0.999
    _, cols = decode_binary(client.get("/api/maps/umap").content)
    assert added["id"] in cols["id"].tolist()
    # The images that were there keep their ids and their places.
    after = open_snapshot(site["data"])
    for name, pos in before.layouts.items():
        rows = [after.row_of(int(i)) for i in before.ids]
        np.testing.assert_array_equal(after.layouts[name][rows], pos)
    # A restart finds it: the 2xx came after the snapshot was published.
    settings = Settings(data_dir=site["data"], reload_interval_s=3600)
    with TestClient(create_app(settings)) as again:
        assert again.get(f"/api/images/{added['id']}").status_code == 200


def test_removing_moves_the_file_out_and_drops_the_image(site: dict) -> None:
    client: TestClient = site["client"]
    res = client.post(
        "/api/images",
        files=[("files", ("x.jpg", photo(1), "image/jpeg"))],
        data={"label": "later"},
    )
    added = res.json()["images"][0]
    assert added["label"] == "later"
    gone = client.delete(f"/api/images/{added['id']}")
    assert gone.status_code == 200, gone.text
    moved = site["data"] / gone.json()["moved_to"]
    assert moved.read_bytes() == photo(1)  # kept, out of the collection
    assert not (site["collection"] / added["path"]).exists()
    assert client.get(f"/api/images/{added['id']}").status_code == 404
    assert client.delete(f"/api/images/{added['id']}").status_code == 404
    # The next index of the folder agrees, and does not hand the id out again.
    build(site["collection"], site["data"])
    snap = open_snapshot(site["data"])
    assert snap.row_of(added["id"]) is None
    assert (snap.manifest.next_id or 0) > added["id"]


def test_concurrent_additions_are_serialised_and_all_land(site: dict) -> None:
    client: TestClient = site["client"]
    results: list[int] = []

    def add(i: int) -> None:
        res = client.post("/api/images", files=[("files", (f"{i}.jpg", photo(2 + i), "x/y"))])
        results.append(res.status_code)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [201, 201, 201]
    snap = open_snapshot(site["data"])
    for i in range(3):
        q = client.post("/api/search?k=1", files={"file": ("q.jpg", photo(2 + i), "image/jpeg")})
        assert q.json()["results"][0]["score"] > 0.999
        assert q.json()["snapshot"] == snap.id


def test_an_add_after_an_outside_build_uses_the_snapshot_published_since(site: dict) -> None:
    """`pixscape index` of the same data folder publishes (and prunes) behind the
    service's back: the next add must not re-index from the pruned snapshot."""
    client: TestClient = site["client"]
    served = client.get("/api/stats").json()["snapshot"]
    for i in range(4):  # past the 3 snapshots kept: the one served is pruned
        # Another option each time: a build with nothing changed publishes nothing.
        build(site["collection"], site["data"], graph_k=6 + i)
        time.sleep(1.1)  # snapshot ids are stamped to the second
    assert not (site["data"] / "snapshots" / served).exists()
    res = client.post("/api/images", files=[("files", ("o.jpg", photo(6), "image/jpeg"))])
    assert res.status_code == 201, res.text
    assert res.json()["snapshot"] == open_snapshot(site["data"]).id


def test_bad_uploads_store_nothing(site: dict) -> None:
    client: TestClient = site["client"]
    before = sorted(p.name for p in site["collection"].rglob("*"))
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 10)).save(buf, "PNG")
    bad = client.post(
        "/api/images",
        files=[
            ("files", ("ok.png", buf.getvalue(), "image/png")),
            ("files", ("evil.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")),
        ],
    )
    assert bad.status_code == 415 and "evil.svg" in bad.json()["detail"]
    assert client.post(
        "/api/images", files=[("files", ("t.png", buf.getvalue()[:40], "image/png"))]
    ).status_code in (400, 415)
    assert (
        client.post(
            "/api/images",
            files=[("files", ("a.png", buf.getvalue(), "image/png"))],
            data={"label": "../outside"},
        ).status_code
        == 422
    )
    assert sorted(p.name for p in site["collection"].rglob("*")) == before


def test_only_the_admin_key_adds_or_removes(site: dict) -> None:
    client: TestClient = site["client"]
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    for key in (None, READ, "wrong"):
        headers = {"X-API-Key": key} if key else {"X-API-Key": ""}
        add = client.post(
            "/api/images",
            files=[("files", ("a.png", png.getvalue(), "image/png"))],
            headers=headers,
        )
        assert add.status_code == 401, key
        assert client.delete("/api/images/0", headers=headers).status_code == 401, key
    off = Settings(data_dir=site["data"], reload_interval_s=3600)
    with TestClient(create_app(off)) as plain:
        assert plain.delete("/api/images/0").status_code == 403  # no admin key: switched off


@pytest.fixture
def small(tmp_path: Path, models_dir: Path) -> tuple[Path, Path]:
    """A collection of its own, indexed: (collection, data)."""
    collection = make_collection(tmp_path / "collection", photos=6)
    data = fresh_data_dir(tmp_path, models_dir)
    build(collection, data)
    return collection, data


# The layout libraries, torch, and the module that fits maps: the service has none.
_FITTING = ("sklearn", "openTSNE", "umap", "numba", "torch", "pynndescent")


def test_the_service_adds_an_image_without_importing_what_fits_maps(
    small: tuple[Path, Path], tmp_path: Path
) -> None:
    _, data = small
    shot = tmp_path / "shot.jpg"
    shot.write_bytes(photo(0))
    script = f"""
import sys
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings

settings = Settings(data_dir={str(data)!r}, admin_key="k", reload_interval_s=3600)
with TestClient(create_app(settings)) as c:
    files = [("files", ("n.jpg", open({str(shot)!r}, "rb").read(), "image/jpeg"))]
    res = c.post("/api/images", files=files, headers={{"X-API-Key": "k"}})
    assert res.status_code == 201, res.text
    top = c.post("/api/search?k=1", files={{"file": files[0][1]}}, headers={{"X-API-Key": "k"}})
    assert top.json()["results"][0]["id"] == res.json()["images"][0]["id"], top.text
print(sorted(m for m in sys.modules if m.split(".")[0] in {_FITTING!r} or m == "indexer.mapfit"))
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"


def test_maps_only_a_full_build_can_redo_are_a_409_and_nothing_is_published(
    small: tuple[Path, Path],
) -> None:
    collection, data = small
    live = open_snapshot(data)
    # Maps without clusters: placing cannot carry them (a full layout is due).
    manifest = json.loads((live.path / "manifest.json").read_text())
    del manifest["files"]["clusters.npy"]
    (live.path / "manifest.json").write_text(json.dumps(manifest))
    (live.path / "clusters.npy").unlink()
    settings = Settings(data_dir=data, admin_key=ADMIN, reload_interval_s=3600)
    with TestClient(create_app(settings)) as client:
        res = client.post(
            "/api/images",
            files=[("files", ("new.jpg", photo(0), "image/jpeg"))],
            headers={"X-API-Key": ADMIN},
        )
        assert res.status_code == 409, res.text
        assert "run `pixscape index`" in res.json()["detail"]
        assert client.get("/api/stats").json()["snapshot"] == live.id
    assert (data / "CURRENT").read_text().strip() == live.id
    (stored,) = (collection / "uploads").iterdir()  # kept for the next full build
    assert stored.read_bytes() == photo(0)
    build(collection, data)
    after = open_snapshot(data)
    assert after.clusters is not None and "uploads/" + stored.name in {r.path for r in after.rows}
