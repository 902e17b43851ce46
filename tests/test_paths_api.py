"""GET/POST /api/path through a real ASGI client over the real snapshot."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from indexer import graph as G
from indexer import routing as R
from indexer.build import build
from indexer.manifest import Contents
from indexer.snapshot import open_snapshot, write_snapshot
from service.app import create_app
from service.settings import Settings

from .conftest import Built, fresh_data_dir, sample_images


@pytest.fixture(scope="module")
def client(built: Built) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=built.data_dir))) as c:
        yield c


def _edge(built: Built, a: int, b: int) -> bool:
    graph = built.snapshot.graph
    assert graph is not None
    return b in graph.indices[graph.indptr[a] : graph.indptr[a + 1]]


def _ids(body: dict) -> list[int | None]:
    return [item["image"]["id"] if item["image"] else None for item in body["chain"]]


def test_path_between_two_images(client: TestClient, built: Built) -> None:
    n = built.snapshot.count
    res = client.get("/api/path", params={"source": 3, "target": n - 2})
    assert res.status_code == 200, res.text
    body = res.json()
    ids = _ids(body)
    assert ids[0] == 3 and ids[-1] == n - 2 and len(set(ids)) == len(ids)
    assert all(_edge(built, a, b) for a, b in pairwise(ids))  # type: ignore[arg-type]
    assert body["snapshot"] == built.snapshot.id and body["hops"] == len(ids) - 1
    assert body["smoothness"] == G.DEFAULT_POWER and body["graph_k"] == G.DEFAULT_K
    assert not body["resampled"] and body["total_cost"] > 0
    v = np.asarray(built.snapshot.vectors)
    sims = [item["similarity"] for item in body["chain"]]
    assert sims[0] is None
    expected = R.step_similarities(v[ids])
    assert np.allclose(sims[1:], expected, atol=1e-5)
    assert body["weakest_similarity"] == pytest.approx(min(sims[1:]), abs=1e-6)
    assert body["chain"][body["weakest_step"]]["similarity"] == body["weakest_similarity"]
    assert [item["stop"] for item in body["chain"]] == [True] + [False] * (len(ids) - 2) + [True]
    thumb = client.get(body["chain"][1]["image"]["thumbnail_url"])
    assert thumb.status_code == 200


def test_every_pair_of_a_sample_has_a_chain(client: TestClient, built: Built) -> None:
    rng = np.random.default_rng(5)
    for s, t in rng.choice(built.snapshot.count, size=(15, 2), replace=False):
        res = client.get("/api/path", params={"source": int(s), "target": int(t)})
        assert res.status_code == 200, res.text
        ids = _ids(res.json())
        assert ids[0] == s and ids[-1] == t


def test_max_steps_resamples_keeping_ends_and_waypoints(client: TestClient, built: Built) -> None:
    # The image least like image 0: far apart, so the chain between them is long.
    v = np.asarray(built.snapshot.vectors)
    far = int(np.argmin(v @ v[0]))
    full = client.get("/api/path", params={"source": 0, "target": far, "smoothness": 8}).json()
    assert full["hops"] >= 3  # p = 8 takes many small steps
    res = client.get(
        "/api/path", params={"source": 0, "target": far, "smoothness": 8, "max_steps": 3}
    )
    body = res.json()
    assert res.status_code == 200 and len(body["chain"]) == 3 and body["resampled"]
    assert _ids(body)[0] == 0 and _ids(body)[-1] == far
    assert set(_ids(body)) <= set(_ids(full))


def test_waypoints_are_visited_in_order(client: TestClient, built: Built) -> None:
    n = built.snapshot.count
    via = [n // 3, 2 * n // 3]
    res = client.get(
        "/api/path", params={"source": 1, "target": n - 3, "via": f"{via[0]}, {via[1]}"}
    )
    assert res.status_code in (200, 409), res.text
    if res.status_code == 409:  # only when an earlier leg cut a later one off
        assert "earlier legs" in res.json()["detail"]
        return
    body = res.json()
    ids = _ids(body)
    stops = [i for i, item in zip(ids, body["chain"], strict=True) if item["stop"]]
    assert stops == [1, *via, n - 3] and len(set(ids)) == len(ids)
    assert ids.index(via[0]) < ids.index(via[1])


def test_avoid_routes_around(client: TestClient, built: Built) -> None:
    n = built.snapshot.count
    first = _ids(client.get("/api/path", params={"source": 2, "target": n - 5}).json())
    inner = first[1:-1]
    if not inner:
        pytest.skip("the two images are neighbours")
    res = client.get(
        "/api/path",
        params={"source": 2, "target": n - 5, "avoid": ",".join(map(str, inner))},
    )
    assert res.status_code == 200, res.text
    assert not set(inner) & set(_ids(res.json()))


def test_no_acceptable_path_is_409_with_a_reason(client: TestClient, built: Built) -> None:
    res = client.get("/api/path", params={"source": 0, "target": 9, "min_similarity": 0.999})
    assert res.status_code == 409
    assert "no acceptable path" in res.json()["detail"]
    assert "0.999" in res.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"source": 99999, "target": 1},
        {"source": 1, "target": 99999},
        {"source": 1, "target": 2, "via": "99999"},
        {"source": 1, "target": 2, "avoid": "5,99999"},
    ],
)
def test_unknown_ids_are_404(client: TestClient, params: dict) -> None:
    res = client.get("/api/path", params=params)
    assert res.status_code == 404 and "99999" in res.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"source": 1},
        {"source": 1, "target": 1},
        {"source": 1, "target": 2, "via": "2"},
        {"source": 1, "target": 2, "avoid": "1"},
        {"source": 1, "target": 2, "smoothness": 0.5},
        {"source": 1, "target": 2, "smoothness": 9},
        {"source": 1, "target": 2, "max_steps": 1},
        {"source": 1, "target": 2, "via": "3", "max_steps": 2},
        {"source": 1, "target": 2, "via": "3;4"},
        {"source": -1, "target": 2},
    ],
)
def test_bad_parameters_are_422(client: TestClient, params: dict) -> None:
    res = client.get("/api/path", params=params)
    assert res.status_code == 422, res.text
    assert "detail" in res.json()


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def test_uploaded_source_joins_the_graph_for_one_request(client: TestClient, built: Built) -> None:
    row = built.snapshot.rows[7]
    with Image.open(built.collection / row.path) as im:
        changed = _png(im.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    target = built.snapshot.count - 1
    res = client.post(
        "/api/path", params={"target": target}, files={"source_file": ("q.png", changed)}
    )
    assert res.status_code == 200, res.text
    body = res.json()
    first, second = body["chain"][0], body["chain"][1]
    assert first["image"] is None and first["upload"] == "source" and first["stop"]
    assert body["uploads"]["source"]["format"] == "PNG"
    assert _ids(body)[-1] == target
    # The first step is one of the upload's nearest neighbours (its attachment).
    near = client.post("/api/search", files={"file": ("q.png", changed)}, params={"k": 40}).json()
    assert second["image"]["id"] in [r["id"] for r in near["results"]][: 4 * G.DEFAULT_K]
    ids = _ids(body)[1:]
    assert all(_edge(built, a, b) for a, b in pairwise(ids))  # type: ignore[arg-type]
    # Nothing stays attached: the graph is the snapshot's again.
    assert client.get("/api/path", params={"source": 7, "target": target}).status_code == 200


def test_uploading_an_indexed_file_never_shows_it_twice(client: TestClient, built: Built) -> None:
    row = built.snapshot.rows[12]
    data = (built.collection / row.path).read_bytes()
    res = client.post("/api/path", params={"target": 40}, files={"source_file": ("x", data)})
    assert res.status_code == 200, res.text
    assert 12 not in _ids(res.json())
    same = client.post("/api/path", params={"target": 12}, files={"source_file": ("x", data)})
    assert same.status_code == 422
    both = client.post("/api/path", files={"source_file": ("a", data), "target_file": ("b", data)})
    assert both.status_code == 422


def test_post_needs_exactly_one_form_of_each_end(client: TestClient, built: Built) -> None:
    data = (built.collection / built.snapshot.rows[0].path).read_bytes()
    assert client.post("/api/path", params={"source": 1}).status_code == 422
    res = client.post(
        "/api/path", params={"source": 1, "target": 2}, files={"source_file": ("x", data)}
    )
    assert res.status_code == 422
    bad = client.post("/api/path", params={"target": 2}, files={"source_file": ("x", b"nope")})
    assert bad.status_code in (400, 415)


def test_openapi_documents_the_path_routes(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for method in ("get", "post"):
        op = spec["paths"]["/api/path"][method]
        assert {"200", "404", "409", "422"} <= set(op["responses"])
    names = {p["name"] for p in spec["paths"]["/api/path"]["get"]["parameters"]}
    assert {
        "source",
        "target",
        "via",
        "avoid",
        "max_steps",
        "smoothness",
        "min_similarity",
    } <= names


def test_exact_duplicates_never_share_a_chain(tmp_path: Path, models_dir: Path) -> None:
    collection = tmp_path / "collection"
    picked = sample_images()[::8][:10]
    for i, src in enumerate(picked):
        (collection / "a").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, collection / "a" / f"{i}.png")
    for i in (0, 3):  # the same content under two more names each
        for copy in ("b", "c"):
            (collection / copy).mkdir(exist_ok=True)
            shutil.copyfile(picked[i], collection / copy / f"{i}.png")
    data = fresh_data_dir(tmp_path, models_dir)
    build(collection, data, graph_k=3)
    snap = open_snapshot(data)
    by_sha: dict[str, list[int]] = {}
    for r in snap.rows:
        by_sha.setdefault(r.sha256, []).append(r.id)
    groups = [ids for ids in by_sha.values() if len(ids) > 1]
    assert len(groups) == 2 and snap.manifest.graph and snap.manifest.graph.nodes == 10
    with TestClient(create_app(Settings(data_dir=data))) as c:
        for dup in (i for g in groups for i in g):
            for other in range(snap.count):
                res = c.get("/api/path", params={"source": dup, "target": other})
                if other in next(g for g in groups if dup in g):
                    assert res.status_code == 422  # identical content at both ends
                    continue
                assert res.status_code == 200, res.text
                ids = _ids(res.json())
                assert ids[0] == dup and ids[-1] == other
                shas = [snap.rows[i].sha256 for i in ids]  # type: ignore[index]
                assert len(set(shas)) == len(shas)


def test_snapshot_without_graph_answers_409(tmp_path: Path, built: Built) -> None:
    old = built.snapshot
    # What a snapshot from before graphs (and maps) looked like.
    m = old.manifest
    contents = Contents(
        model=m.model,
        index_type=m.index_type,
        metric=m.metric,
        collection=m.collection,
        build=m.build,
    )
    data = tmp_path / "data"
    snap_dir = write_snapshot(
        data,
        rows=old.rows,
        vectors=np.asarray(old.vectors),
        index_bytes=(old.path / "index.faiss").read_bytes(),
        model_path=old.model_path,
        thumbnails=[old.thumbnail_path(r.id).read_bytes() for r in old.rows],
        contents=contents,
    )
    (data / "CURRENT").write_text(snap_dir.name)
    assert open_snapshot(data).graph is None
    assert "graph" not in json.loads((snap_dir / "manifest.json").read_text())
    with TestClient(create_app(Settings(data_dir=data))) as c:
        res = c.get("/api/path", params={"source": 0, "target": 1})
        assert res.status_code == 409 and "no path graph" in res.json()["detail"]
        assert c.get("/api/path", params={"source": 0, "target": 10**6}).status_code == 404
