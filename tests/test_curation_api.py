"""Acting on what you find, over HTTP on real snapshots: filters, duplicates,
export, more like these, tours. Real model, real files, a real zip."""

from __future__ import annotations

import base64
import csv
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageEnhance

from indexer.build import build
from indexer.duplicates import DEFAULT_MIN_SIMILARITY, choose_keeper, components
from indexer.routing import tour_order
from indexer.snapshot import open_snapshot
from service.app import create_app
from service.settings import Settings

from .conftest import Built, fresh_data_dir, sample_photos


@pytest.fixture(scope="module")
def client(built: Built) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=built.data_dir))) as c:
        yield c


def _ids_with(built: Built, label: str) -> set[int]:
    return {r.id for r in built.snapshot.rows if r.label == label}


# ---------------------------------------------------------------- filters


def test_labels_lists_every_folder_with_its_count(client: TestClient, built: Built) -> None:
    body = client.get("/api/labels").json()
    counts = {x["label"]: x["count"] for x in body["labels"]}
    expected: dict[str, int] = {}
    for r in built.snapshot.rows:
        expected[r.label or ""] = expected.get(r.label or "", 0) + 1
    assert counts == expected
    assert [x["count"] for x in body["labels"]] == sorted(counts.values(), reverse=True)


def test_similar_within_a_folder_fills_k_from_that_folder(client: TestClient, built: Built) -> None:
    photo = next(r for r in built.snapshot.rows if r.label == "photos")
    # The photos' nearest images are photos; ask for the nearest stamps of one folder.
    folder = next(r.label for r in built.snapshot.rows if r.label not in (None, "photos"))
    inside = _ids_with(built, folder)
    res = client.get(f"/api/images/{photo.id}/similar", params={"k": 5, "label": folder})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["within"] == len(inside)
    assert len(body["results"]) == 5 and {r["id"] for r in body["results"]} <= inside
    # The k best within the folder: exactly brute force over the folder's vectors.
    snap = built.snapshot
    rows = np.array([snap.row_of(i) for i in sorted(inside)])
    sims = np.asarray(snap.vectors[rows]) @ np.asarray(snap.vectors[snap.row_of(photo.id)])
    best = snap.ids[rows[np.argsort(-sims)[:5]]]
    assert [r["id"] for r in body["results"]] == best.tolist()
    unfiltered = client.get(f"/api/images/{photo.id}/similar", params={"k": 5}).json()
    assert unfiltered["within"] is None
    assert not {r["id"] for r in unfiltered["results"]} & inside


def _passing(client: TestClient, built: Built, params: dict[str, object]) -> set[int]:
    """The ids GET /api/filter lets through (its mask decoded)."""
    body = client.get("/api/filter", params=params).json()  # type: ignore[arg-type]
    assert body["total"] == built.snapshot.count
    packed = np.frombuffer(base64.b64decode(body["mask"]), np.uint8)
    bits = np.unpackbits(packed, bitorder="little")[: built.snapshot.count].astype(bool)
    assert int(bits.sum()) == body["count"]
    return set(built.snapshot.ids[bits].tolist())


def test_two_labels_are_alternatives(client: TestClient, built: Built) -> None:
    folders = sorted({r.label for r in built.snapshot.rows if r.label})[:2]
    inside = _ids_with(built, folders[0]) | _ids_with(built, folders[1])
    assert _passing(client, built, {"label": folders}) == inside


def test_words_within_a_folder_and_a_concept_filter(client: TestClient, built: Built) -> None:
    # The cats (scikit-image's chelsea) are among the photos: "cat" within photos
    # finds them; within a stamp folder it finds none of them.
    within = client.get("/api/search", params={"q": "cat", "k": 5, "label": "photos"}).json()
    assert within["results"] and all(r["label"] == "photos" for r in within["results"])
    stamps = next(r.label for r in built.snapshot.rows if r.label not in (None, "photos"))
    other = client.get("/api/search", params={"q": "cat", "label": stamps}).json()
    assert all(r["label"] == stamps for r in other["results"])
    assert not any("chelsea" in r["path"] for r in other["results"])
    # concept= filters a similarity search to what the classifier sees.
    photo = next(r for r in built.snapshot.rows if "chelsea" in r.path)
    res = client.get(f"/api/images/{photo.id}/similar", params={"concept": "cat", "k": 50}).json()
    cats = _passing(client, built, {"concept": "cat"})
    assert res["within"] == len(cats) and {r["id"] for r in res["results"]} <= cats
    assert sum("chelsea" in r.path for r in built.snapshot.rows if r.id in cats) >= 5


def test_bad_filters_are_422_with_a_hint(client: TestClient) -> None:
    res = client.get("/api/search", params={"q": "cat", "label": "photoz"})
    assert res.status_code == 422 and "photos" in res.json()["detail"]
    res = client.get("/api/filter", params={"concept": "zzzqqq"})
    assert res.status_code == 422 and "zzzqqq" in res.json()["detail"]
    res = client.get("/api/filter", params={"label": ["x"] * 51})
    assert res.status_code == 422


def test_an_upload_search_within_a_folder(client: TestClient, built: Built) -> None:
    photo = next(r for r in built.snapshot.rows if r.label == "photos")
    data = (built.collection / photo.path).read_bytes()
    folder = next(r.label for r in built.snapshot.rows if r.label not in (None, "photos"))
    res = client.post(
        "/api/search",
        params={"k": 3, "label": folder},
        files={"file": ("q.jpg", data, "image/jpeg")},
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["within"] == len(_ids_with(built, folder))
    assert len(body["results"]) == 3 and all(r["label"] == folder for r in body["results"])


def test_a_path_can_keep_within_a_folder(client: TestClient, built: Built) -> None:
    photos = sorted(_ids_with(built, "photos"))
    a, b = photos[0], photos[-1]
    res = client.get("/api/path", params={"source": a, "target": b, "label": "photos"})
    assert res.status_code in (200, 409), res.text
    if res.status_code == 200:
        assert all(s["image"]["label"] == "photos" for s in res.json()["chain"])
    stamp = next(r.id for r in built.snapshot.rows if r.label not in (None, "photos"))
    res = client.get("/api/path", params={"source": a, "target": stamp, "label": "photos"})
    assert res.status_code == 422 and "outside the filter" in res.json()["detail"]


# ---------------------------------------------------------------- duplicates


def test_components_join_near_pairs_and_same_hashes() -> None:
    sims = np.array([[0.95, 0.2], [0.95, 0.3], [0.3, 0.2], [0.1, 0.0]], np.float32)
    ids = np.array([[1, 2], [0, 2], [1, 0], [0, -1]])
    groups = components(sims, ids, ["a", "b", "c", "c"], 0.9)
    assert [g.tolist() for g in groups] == [[0, 1], [2, 3]]
    assert components(sims, ids, ["a", "b", "c", "d"], 0.99) == []


def test_the_keeper_has_the_most_pixels_then_the_largest_file() -> None:
    codes = np.array([0, 1, 2])
    rows = np.array([0, 1, 2])
    best, why = choose_keeper(rows, np.array([100, 400, 400]), np.array([9, 5, 7]), codes)
    assert best == 2 and "largest file" in why
    best, why = choose_keeper(rows, np.array([100, 400, 200]), np.array([9, 5, 7]), codes)
    assert best == 1 and "most pixels" in why


def test_tour_order_visits_each_once_along_short_steps() -> None:
    rng = np.random.default_rng(0)
    # Points on an arc, shuffled: the tour walks the arc end to end.
    angles = np.linspace(0, 1.5, 12)
    v = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    shuffled = rng.permutation(12)
    order = tour_order(v[shuffled])
    walked = shuffled[order]
    assert sorted(walked.tolist()) == list(range(12))
    assert walked.tolist() in (list(range(12)), list(range(11, -1, -1)))


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[TestClient]:
    """Twenty photos, two of them copied five ways (what people's folders hold)."""
    base = tmp_path_factory.mktemp("planted")
    folder = base / "collection" / "photos"
    folder.mkdir(parents=True)
    photos = sample_photos(20)
    for src in photos:
        (folder / src.name).write_bytes(src.read_bytes())
    copies = base / "collection" / "copies"
    copies.mkdir()
    for src in photos[:2]:
        stem = src.stem
        with Image.open(src) as im:
            im = im.convert("RGB")
            w, h = im.size
            im.save(copies / f"{stem}-q30.jpg", quality=30)
            im.resize((w // 2, h // 2), Image.Resampling.LANCZOS).save(copies / f"{stem}-half.jpg")
            dx, dy = w // 20, h // 20
            im.crop((dx, dy, w - dx, h - dy)).save(copies / f"{stem}-crop.jpg", quality=90)
            shifted = ImageEnhance.Brightness(ImageEnhance.Color(im).enhance(1.15)).enhance(1.05)
            shifted.save(copies / f"{stem}-colour.jpg", quality=75)
        (copies / f"{stem}-copy.jpg").write_bytes(src.read_bytes())
    data = fresh_data_dir(base, models_dir)
    build(base / "collection", data)
    assert open_snapshot(data).count == 30
    with TestClient(create_app(Settings(data_dir=data))) as c:
        yield c


def test_duplicates_groups_the_copies_and_keeps_the_original(planted: TestClient) -> None:
    res = planted.get("/api/duplicates")
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["min_similarity"] == body["default_min_similarity"] == DEFAULT_MIN_SIMILARITY
    groups = body["groups"]
    assert body["total_groups"] == len(groups) == 2, [
        [i["path"] for i in g["images"]] for g in groups
    ]
    for group in groups:
        names = sorted(Path(i["path"]).name for i in group["images"])
        stem = Path(next(n for n in names if "-" not in n.split(".")[0][-7:])).stem
        assert len(names) == 6 and all(n.startswith(stem) for n in names), names
        keeper = group["images"][0]
        assert keeper["keeper"] and keeper["id"] == group["keeper"]
        # The original and its exact copy tie (pixels and bytes); the first by id
        # (copies/ sorts first) is kept, and the reason says it was a tie.
        assert keeper["path"] == f"copies/{stem}-copy.jpg", group
        assert "tied" in group["reason"]
        assert group["kind"] == "near"
        exact = [i for i in group["images"] if i["exact"]]
        assert len(exact) == 2 and all(i["similarity"] == 1.0 for i in exact)
        sims = [i["similarity"] for i in group["images"]]
        assert sims == sorted(sims, reverse=True) and sims[-1] >= DEFAULT_MIN_SIMILARITY


def test_duplicates_threshold_and_paging(planted: TestClient) -> None:
    strict = planted.get("/api/duplicates", params={"min_similarity": 1.0}).json()
    # At 1.0 only identical content is left: the two exact copies.
    assert strict["total_groups"] == 2
    assert all(g["kind"] == "exact" and len(g["images"]) == 2 for g in strict["groups"])
    assert all("identical" in g["reason"] for g in strict["groups"])
    page = planted.get("/api/duplicates", params={"limit": 1, "offset": 1}).json()
    assert page["total_groups"] == 2 and len(page["groups"]) == 1 and page["offset"] == 1
    within = planted.get("/api/duplicates", params={"label": "copies"}).json()
    assert within["total_groups"] == 2  # whole groups: the originals are in photos/
    assert planted.get("/api/duplicates", params={"min_similarity": 0.1}).status_code == 422


# ---------------------------------------------------------------- selection


def test_export_csv_and_json_list_the_selection(client: TestClient, built: Built) -> None:
    rows = built.snapshot.rows[:3]
    ids = [r.id for r in rows]
    res = client.post("/api/export", json={"ids": ids, "format": "csv", "scores": [0.9, None, 1]})
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("text/csv")
    assert res.headers["content-disposition"].endswith('.csv"')
    table = list(csv.DictReader(io.StringIO(res.text)))
    assert [int(t["id"]) for t in table] == ids
    assert [t["path"] for t in table] == [r.path for r in rows]
    assert [t["score"] for t in table] == ["0.9", "", "1.0"]
    body = client.post("/api/export", json={"ids": ids, "format": "json"}).json()
    assert [i["id"] for i in body["images"]] == ids and body["images"][0]["score"] is None


def test_export_zip_streams_the_original_files(client: TestClient, built: Built) -> None:
    rows = built.snapshot.rows[:4]
    res = client.post("/api/export", json={"ids": [r.id for r in rows], "format": "zip"})
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(res.content)) as zf:
        assert zf.testzip() is None
        assert zf.namelist() == [r.path for r in rows]
        for r in rows:
            assert zf.read(r.path) == (built.collection / r.path).read_bytes()


def test_export_refusals(client: TestClient, built: Built, tmp_path: Path) -> None:
    assert client.post("/api/export", json={"ids": [], "format": "csv"}).status_code == 422
    assert client.post("/api/export", json={"ids": [1], "format": "tar"}).status_code == 422
    res = client.post("/api/export", json={"ids": [2**31 - 1], "format": "csv"})
    assert res.status_code == 404
    res = client.post("/api/export", json={"ids": [0, 1], "format": "csv", "scores": [1]})
    assert res.status_code == 422
    small = Settings(data_dir=built.data_dir, max_export_bytes=1000)
    with TestClient(create_app(small)) as c:
        res = c.post("/api/export", json={"ids": [built.snapshot.rows[0].id], "format": "zip"})
    assert res.status_code == 413 and "export limit" in res.json()["detail"]


def test_more_like_these_excludes_the_selection(client: TestClient, built: Built) -> None:
    cats = [r.id for r in built.snapshot.rows if "chelsea" in r.path][:3]
    res = client.post("/api/search/like", json={"ids": cats, "k": 5})
    assert res.status_code == 200, res.text
    results = res.json()["results"]
    assert len(results) == 5 and not {r["id"] for r in results} & set(cats)
    assert all("chelsea" in r["path"] for r in results[:2])
    # Steering away from the cats themselves leaves no cat on top.
    away = client.post(
        "/api/search/like", json={"ids": cats[:1], "negative": cats[1:], "k": 5}
    ).json()["results"]
    assert away[0]["score"] < results[0]["score"]
    both = client.post("/api/search/like", json={"ids": cats[:1], "negative": cats[:1]})
    assert both.status_code == 422
    assert client.post("/api/search/like", json={"ids": []}).status_code == 422


def test_a_tour_visits_every_selected_image(client: TestClient, built: Built) -> None:
    picked = [r.id for r in built.snapshot.rows if r.label == "photos"][:6]
    res = client.post("/api/tour", json={"ids": picked})
    assert res.status_code == 200, res.text
    chain = res.json()["chain"]
    stops = [s["image"]["id"] for s in chain if s["stop"]]
    assert sorted(stops) == sorted(picked)
    assert len({s["image"]["id"] for s in chain}) == len(chain)
    assert client.post("/api/tour", json={"ids": picked[:1]}).status_code == 422
    assert client.post("/api/tour", json={"ids": list(range(201))}).status_code == 422


def test_the_openapi_document_has_every_curation_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/api/labels", "/api/filter", "/api/duplicates"):
        assert "get" in paths[route]
    for route in ("/api/export", "/api/search/like", "/api/tour"):
        assert "post" in paths[route]
    params = {p["name"] for p in paths["/api/images/{image_id}/similar"]["get"]["parameters"]}
    assert {"label", "concept"} <= params
    assert json.dumps(paths["/api/export"]).count("413")
