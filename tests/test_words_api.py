"""Search by word, completion and tags, over HTTP on the session's real snapshot:
the real classifier's probabilities, the real vocabulary."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from service.words import STEER_FLOOR

from .conftest import Built


@pytest.fixture(scope="module")
def client(built: Built) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=built.data_dir))) as c:
        yield c


def test_a_word_finds_the_photos_of_its_class(client: TestClient, built: Built) -> None:
    # The collection's cat photos are crops of scikit-image's chelsea.png (a tabby):
    # nothing in the query or the index knows their names.
    cats = sum("chelsea" in r.path for r in built.snapshot.rows)
    assert cats >= 5
    res = client.get("/api/search", params={"q": "cat", "k": 5})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["query"] is None and body["words"]["words"] == ["cat"]
    assert len(body["results"]) == 5
    assert all("chelsea" in r["path"] for r in body["results"]), body["results"]
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] <= 1
    for r in body["results"]:
        assert r["match"]["word"] == "cat"
        assert r["match"]["concept"] in {"tabby", "tiger cat", "egyptian cat", "persian cat"}
    assert set(body["placement"]) == set(built.snapshot.layouts)


def test_general_words_reach_specific_classes(client: TestClient) -> None:
    # "animal" reaches the tabby classes through WordNet: cats are animals.
    body = client.get("/api/search", params={"q": "animals", "k": 50}).json()
    assert body["words"]["words"] == ["animal"]
    assert any("chelsea" in r["path"] for r in body["results"])
    assert all(r["match"]["word"] == "animal" for r in body["results"])


def test_several_words_are_alternatives(client: TestClient) -> None:
    cat = client.get("/api/search", params={"q": "cat", "k": 200}).json()["results"]
    clock = client.get("/api/search", params={"q": "wall clock", "k": 200}).json()["results"]
    both = client.get("/api/search", params={"q": "cat, wall clock", "k": 200}).json()
    assert both["words"]["words"] == ["cat", "wall clock"]
    found = {r["id"] for r in both["results"]}
    assert found == {r["id"] for r in cat} | {r["id"] for r in clock}
    for r in both["results"]:
        best = max(
            [x["score"] for x in cat if x["id"] == r["id"]]
            + [x["score"] for x in clock if x["id"] == r["id"]]
        )
        assert r["score"] == pytest.approx(best)


def test_unknown_words_answer_with_suggestions_not_errors(client: TestClient) -> None:
    res = client.get("/api/search", params={"q": "parot"})
    assert res.status_code == 200
    body = res.json()
    assert body["results"] == [] and body["words"]["unknown"] == ["parot"]
    assert "parrot" in body["words"]["suggestions"]
    for q in ("zzzzqqq", "the of and", "\u00e9\u00e8 \U0001f600", "%00", "a" * 200):
        res = client.get("/api/search", params={"q": q})
        assert res.status_code == 200, (q, res.text)
        assert res.json()["results"] == []
    assert client.get("/api/search", params={"q": ""}).status_code == 422
    assert client.get("/api/search", params={"q": "a" * 201}).status_code == 422
    assert client.get("/api/search").status_code == 422


def test_an_upload_steered_by_a_word_keeps_to_the_word(client: TestClient, built: Built) -> None:
    row = next(r for r in built.snapshot.rows if "chelsea" in r.path)
    data = (built.collection / row.path).read_bytes()
    res = client.post("/api/search", files={"file": ("q.jpg", data)}, params={"q": "cat", "k": 50})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["query"]["format"] == "JPEG" and body["words"]["words"] == ["cat"]
    assert body["results"][0]["id"] == row.id  # itself, the most similar of the cats
    assert body["results"][0]["score"] == pytest.approx(1.0, abs=1e-3)
    # Only images the word reaches (mass at least STEER_FLOOR), by similarity.
    mass = {
        r["id"]: r["score"]
        for r in client.get("/api/search", params={"q": "cat", "k": 200}).json()["results"]
    }
    steered = {r["id"] for r in body["results"]}
    assert steered == {i for i, m in mass.items() if m >= STEER_FLOOR} or len(steered) == 50
    assert all(mass[i] >= STEER_FLOOR for i in steered)
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    plain = client.post("/api/search", files={"file": ("q.jpg", data)}, params={"k": 200}).json()
    sims = {r["id"]: r["score"] for r in plain["results"]}
    assert all(r["score"] == pytest.approx(sims[r["id"]], abs=1e-4) for r in body["results"])


def test_completion_offers_vocabulary_words_with_their_counts(client: TestClient) -> None:
    body = client.get("/api/concepts", params={"prefix": "tab"}).json()
    words = {w["word"]: w for w in body["words"]}
    assert "tabby" in words and words["tabby"]["classes"] == 1
    body = client.get("/api/concepts", params={"prefix": "cat", "limit": 50}).json()
    words = {w["word"]: w for w in body["words"]}
    assert words["cat"]["classes"] == 13 and words["cat"]["images"] >= 5  # the chelsea crops
    assert client.get("/api/concepts", params={"prefix": "zzzq"}).json()["words"] == []
    assert client.get("/api/concepts", params={"prefix": ""}).json()["words"] == []
    assert client.get("/api/concepts", params={"prefix": "a", "limit": 51}).status_code == 422


def test_an_image_says_what_the_classifier_sees(client: TestClient, built: Built) -> None:
    row = next(r for r in built.snapshot.rows if "chelsea" in r.path)
    tags = client.get(f"/api/images/{row.id}").json()["tags"]
    assert tags and tags[0]["word"] in {"tabby", "tiger cat", "egyptian cat"}
    probs = [t["probability"] for t in tags]
    assert probs == sorted(probs, reverse=True) and 0 < probs[0] <= 1
    # Every tag is a word the search takes.
    found = client.get("/api/search", params={"q": tags[0]["word"], "k": 200}).json()
    assert row.id in {r["id"] for r in found["results"]}


def _without_concepts(src: Path, dest: Path) -> Path:
    """A copy of the data folder whose snapshot is as builds before words wrote it."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("cache", "models"))
    snap = dest / "snapshots" / (dest / "CURRENT").read_text().strip()
    manifest = json.loads((snap / "manifest.json").read_text())
    del manifest["concepts"]
    manifest["files"] = {k: v for k, v in manifest["files"].items() if "concepts/" not in k}
    (snap / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(snap / "concepts")
    return dest


def test_snapshots_without_concepts_ask_for_a_rebuild(built: Built, tmp_path: Path) -> None:
    data = _without_concepts(built.data_dir, tmp_path / "data")
    with TestClient(create_app(Settings(data_dir=data))) as old:
        assert old.get("/api/health").json()["status"] == "ok"
        for url, params in (("/api/search", {"q": "cat"}), ("/api/concepts", {"prefix": "ca"})):
            res = old.get(url, params=params)
            assert res.status_code == 409 and "rebuild" in res.json()["detail"]
        first = built.snapshot.rows[0]
        info = old.get(f"/api/images/{first.id}").json()
        assert info["tags"] == [] and info["id"] == first.id
        data_bytes = (built.collection / first.path).read_bytes()
        plain = old.post("/api/search", files={"file": ("q.png", data_bytes)})
        assert plain.status_code == 200 and plain.json()["results"][0]["id"] == first.id
