"""Any file name the file system allows, through a real build and the real API.

File names are bytes: old cameras, Windows shares and zip files leave Latin-1 or
invalid UTF-8 behind, and people put newlines, tabs and spaces in them. Each
such file is indexed under its exact bytes, shown by the API in a readable form,
served by id with its own bytes, and kept by an incremental build. Files that
cannot be used are skipped with a readable name and a reason, before they are
hashed, and never stop the build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from indexer.build import build
from indexer.cache import FileHashes
from indexer.snapshot import open_snapshot, publish
from service.app import create_app
from service.settings import Settings

from .conftest import IMAGES, fresh_data_dir

# Exact bytes of each odd name -> the readable form the API must show for it.
ODD_NAMES: dict[bytes, str] = {
    b"caf\xe9.png": "caf\\xe9.png",  # Latin-1
    b"\xff\xfe.png": "\\xff\\xfe.png",  # never valid UTF-8
    b"new\nline.png": "new\\nline.png",
    b"tab\there.png": "tab\\there.png",
    b"  spaced  .png": "  spaced  .png",
    "\u00e9t\u00e9.png".encode(): "\u00e9t\u00e9.png",  # NFC
    "e\u0301te\u0301.png".encode(): "e\u0301te\u0301.png",  # NFD: another file
    b"n" * 251 + b".png": "n" * 251 + ".png",  # 255 bytes, the usual limit
    b"dossier-\xe9t\xe9/photo.png": "dossier-\\xe9t\\xe9/photo.png",
    b" spaced folder /inside.png": " spaced folder /inside.png",
}
LABELS = {
    b"dossier-\xe9t\xe9/photo.png": "dossier-\\xe9t\\xe9",
    b" spaced folder /inside.png": " spaced folder ",
}
SPARSE_SIZE = 3 << 30


def _pngs(n: int) -> list[Path]:
    """`n` distinct real PNGs from the sample collection, one per folder first."""
    folders = sorted(p for p in IMAGES.iterdir() if p.is_dir())
    files = [sorted(f.glob("*.png")) for f in folders]
    picked = [f[i] for i in range(4) for f in files if len(f) > i]
    assert len(picked) >= n
    return picked[:n]


def _put(root: Path, name: bytes, data: bytes) -> bytes:
    path = os.fsencode(root) + b"/" + name
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


@pytest.fixture(scope="module")
def odd(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[dict]:
    base = tmp_path_factory.mktemp("filenames")
    collection = base / "collection"
    sources = _pngs(len(ODD_NAMES) + 5)
    content: dict[bytes, bytes] = {}
    for name, src in zip(
        [*ODD_NAMES, *(f"plain-{i}.png".encode() for i in range(4))], sources[:-1], strict=True
    ):
        content[name] = src.read_bytes()
        _put(collection, name, content[name])
    # Files that must be skipped, by name and reason, without stopping the build.
    with open(_put(collection, b"huge-\xe9.jpg", b""), "r+b") as fh:
        fh.truncate(SPARSE_SIZE)  # sparse: costs no disk
    _put(collection, b"notes\n.png", b"plain text, not an image" * 4)
    os.symlink(b"nowhere-\xff.png", os.fsencode(collection) + b"/gone-\xff.png")
    data = fresh_data_dir(base, models_dir)
    report = build(collection, data, layouts="grid")
    yield {
        "collection": collection,
        "data": data,
        "report": report,
        "content": content,
        "extra": sources[-1],
    }


def test_every_odd_name_is_indexed_under_its_exact_bytes(odd: dict) -> None:
    report = odd["report"]
    assert report.indexed == len(odd["content"]) and not report.unchanged
    snap = open_snapshot(odd["data"])
    by_name = {os.fsencode(r.path): r for r in snap.rows}
    assert set(by_name) == set(odd["content"])
    for name, data in odd["content"].items():
        assert by_name[name].sha256 == hashlib.sha256(data).hexdigest(), name
    nfc, nfd = "\u00e9t\u00e9.png".encode(), "e\u0301te\u0301.png".encode()
    assert by_name[nfc].id != by_name[nfd].id  # two files, not one
    assert by_name[b"dossier-\xe9t\xe9/photo.png"].label == LABELS[b"dossier-\xe9t\xe9/photo.png"]


def test_unusable_files_are_skipped_by_name_before_hashing(odd: dict) -> None:
    reasons = {os.fsencode(s.path): s.reason for s in odd["report"].skipped}
    assert set(reasons) == {b"huge-\xe9.jpg", b"notes\n.png", b"gone-\xff.png"}
    assert "too large" in reasons[b"huge-\xe9.jpg"]
    assert "not a recognised image format" in reasons[b"notes\n.png"]
    assert "unreadable" in reasons[b"gone-\xff.png"]
    # The manifest's report is readable JSON, with readable names.
    manifest = json.loads((open_snapshot(odd["data"]).path / "manifest.json").read_bytes())
    shown = {s["path"] for s in manifest["build"]["skipped"]}
    assert shown == {"huge-\\xe9.jpg", "notes\\n.png", "gone-\\xff.png"}
    # Nothing was hashed: the scan's hash cache never recorded the refused files.
    with FileHashes(odd["data"] / "cache", odd["collection"]) as hashes:
        known = {os.fsencode(p) for p in hashes.known()}
    assert known == set(odd["content"])


@pytest.fixture(scope="module")
def client(odd: dict) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(data_dir=odd["data"]))) as c:
        yield c


def test_the_api_shows_readable_names_and_serves_each_file_by_id(
    odd: dict, client: TestClient
) -> None:
    res = client.get("/api/images", params={"limit": 1000})
    assert res.status_code == 200, res.text
    images = res.json()["images"]
    shown = {img["path"]: img for img in images}
    plain = {f"plain-{i}.png" for i in range(4)}
    assert set(shown) == set(ODD_NAMES.values()) | plain
    for name, readable in ODD_NAMES.items():
        img = shown[readable]
        meta = client.get(f"/api/images/{img['id']}")
        assert meta.status_code == 200 and meta.json()["path"] == readable
        assert meta.json()["label"] == LABELS.get(name, None)
        original = client.get(img["image_url"])
        assert original.status_code == 200, (readable, original.text)
        assert original.content == odd["content"][name], readable
        assert client.get(img["thumbnail_url"]).status_code == 200
        similar = client.get(f"/api/images/{img['id']}/similar", params={"k": 3})
        assert similar.status_code == 200 and similar.json()["query"]["path"] == readable


def test_searching_with_an_odd_file_finds_it_by_its_readable_name(
    odd: dict, client: TestClient
) -> None:
    data = odd["content"][b"\xff\xfe.png"]
    res = client.post("/api/search", params={"k": 3}, files={"file": ("q.png", data)})
    assert res.status_code == 200, res.text
    top = res.json()["results"][0]
    assert top["path"] == "\\xff\\xfe.png" and top["score"] > 0.999


def test_an_incremental_build_keeps_every_odd_name_and_its_id(odd: dict) -> None:
    before = {r.path: r.id for r in open_snapshot(odd["data"]).rows}
    shutil.copyfile(odd["extra"], odd["collection"] / "added later.png")
    again = build(odd["collection"], odd["data"], layouts="grid")
    assert again.embedded == 1 and again.indexed == len(before) + 1
    after = {r.path: r.id for r in open_snapshot(odd["data"]).rows}
    assert {p: after[p] for p in before} == before


def test_a_hash_cache_from_before_is_migrated_and_keeps_its_hashes(tmp_path: Path) -> None:
    """files.sqlite stored paths as TEXT (version 0): it opens, keeps its rows,
    and then takes any name."""
    root = tmp_path / "collection"
    root.mkdir()
    db = sqlite3.connect(tmp_path / "files.sqlite")
    db.execute(
        "CREATE TABLE files (root TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,"
        " mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL, sha256 TEXT NOT NULL,"
        " PRIMARY KEY (root, path))"
    )
    db.execute(
        "INSERT INTO files VALUES (?, ?, 1, 2, 3, ?)", (str(root.resolve()), "a/b.png", "f" * 64)
    )
    db.commit()
    db.close()
    with FileHashes(tmp_path, root) as hashes:
        assert hashes.known() == {"a/b.png": (1, 2, 3, "f" * 64)}
    db = sqlite3.connect(tmp_path / "files.sqlite")
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()


def test_a_snapshot_with_a_text_catalog_still_opens(odd: dict, tmp_path: Path) -> None:
    """Catalogs written before stored paths as TEXT: such a snapshot opens with
    the same rows (the service keeps serving it after an upgrade)."""
    snap = open_snapshot(odd["data"])
    data = tmp_path / "data"
    old = data / "snapshots" / snap.id
    shutil.copytree(snap.path, old)
    catalog = old / "catalog.sqlite"
    db = sqlite3.connect(catalog)
    with db:  # every UTF-8 name as TEXT, as the old writer stored it
        for image_id, raw in db.execute("SELECT id, path FROM images").fetchall():
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue  # the old writer could not store these at all
            db.execute("UPDATE images SET path = ? WHERE id = ?", (text, image_id))
        texts = db.execute("SELECT count(*) FROM images WHERE typeof(path) = 'text'").fetchone()
    db.close()
    assert texts[0] == len(snap.rows) - 3
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["files"]["catalog.sqlite"] = hashlib.sha256(catalog.read_bytes()).hexdigest()
    (old / "manifest.json").write_text(json.dumps(manifest))
    publish(data, old)
    assert open_snapshot(data).rows == snap.rows


def test_an_odd_name_can_be_removed_through_the_admin_api(tmp_path: Path, models_dir: Path) -> None:
    collection = tmp_path / "collection"
    odd = b"caf\xe9 \xff.png"
    for name, src in zip([odd, b"a.png", b"b.png"], _pngs(3), strict=True):
        _put(collection, name, src.read_bytes())
    data = fresh_data_dir(tmp_path, models_dir)
    build(collection, data, layouts="grid")
    settings = Settings(data_dir=data, admin_key="admin-secret")
    with TestClient(create_app(settings)) as c:
        images = c.get("/api/images").json()["images"]
        target = next(img for img in images if img["path"] == "caf\\xe9 \\xff.png")
        res = c.delete(f"/api/images/{target['id']}", headers={"X-API-Key": "admin-secret"})
        assert res.status_code == 200, res.text
        assert res.json()["moved_to"].endswith("/caf\\xe9 \\xff.png")
    moved = [p for p in (data / "removed").rglob("*") if p.is_file()]
    assert [os.fsencode(p.name) for p in moved] == [odd]
    assert not os.path.exists(os.fsencode(collection) + b"/" + odd)
