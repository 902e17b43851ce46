"""The whole indexer on real files: snapshot contract, retrieval, cache, crashes."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer import neighbours
from indexer.build import build
from indexer.cache import CacheRowLost
from indexer.decode import center_crop, decode_image
from indexer.embed import Embedder
from indexer.snapshot import CORE_FILES, SnapshotError, current_id, open_snapshot

from .conftest import Built, fresh_data_dir, make_collection, sample_images


def test_snapshot_follows_the_contract(built: Built) -> None:
    snap = built.snapshot
    for name in ("manifest.json", *CORE_FILES):
        assert (snap.path / name).is_file(), name
    manifest = json.loads((snap.path / "manifest.json").read_text())
    assert manifest["model"]["id"] == "efficientnet-lite0"
    assert len(manifest["model"]["fingerprint"]) == 64
    assert manifest["count"] == snap.count == built.report.indexed > 0
    assert manifest["dim"] == 1280 and snap.vectors.shape == (snap.count, 1280)
    assert snap.index.ntotal == snap.count
    assert sorted(p.name for p in (snap.path / "thumbs").iterdir()) == sorted(
        f"{i}.jpg" for i in range(snap.count)
    )
    assert current_id(built.data_dir) == snap.id
    assert not list((built.data_dir / "snapshots").glob(".tmp-*"))
    norms = np.linalg.norm(snap.vectors, axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-4)
    labels = {row.label for row in snap.rows}
    assert "birds" in labels and "vehicles" in labels


@pytest.mark.parametrize(
    "change, named",
    [
        (lambda m: m.update(colour="blue"), "colour: Extra inputs are not permitted"),
        (lambda m: m["model"].update(layers=12), "model.layers: Extra inputs"),
        (lambda m: m.pop("collection"), "collection: Field required"),
        (lambda m: m["graph"].pop("power"), "graph.power: Field required"),
        (lambda m: m.update(count="many"), "count: Input should be a valid integer"),
        (lambda m: m.update(format_version=2), "format 2 unsupported"),
        (lambda m: m.pop("graph"), "graph.npz and the manifest's graph entry disagree"),
    ],
)
def test_a_manifest_unlike_the_contract_fails_at_open_naming_the_field(
    built: Built, tmp_path: Path, change: object, named: str
) -> None:
    data = tmp_path / "data"
    copy = data / "snapshots" / built.snapshot.id
    shutil.copytree(built.snapshot.path, copy)
    (data / "CURRENT").write_text(built.snapshot.id + "\n")
    manifest = json.loads((copy / "manifest.json").read_text())
    change(manifest)  # type: ignore[operator]
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SnapshotError) as err:
        open_snapshot(data)
    assert named in str(err.value) and str(copy) in str(err.value)


def test_thumbnails_are_small_jpegs(built: Built) -> None:
    for image_id in (0, built.snapshot.count - 1):
        with Image.open(built.snapshot.thumbnail_path(image_id)) as im:
            assert im.format == "JPEG" and max(im.size) <= 256
            assert not im.getexif()


def test_every_image_finds_itself_first(built: Built) -> None:
    snap = built.snapshot
    scores, ids = neighbours.search(snap.index, np.asarray(snap.vectors), 5)
    distinct = {row.sha256 for row in snap.rows}
    assert len(distinct) == snap.count  # no duplicate content in the test set
    assert (ids[:, 0] == np.arange(snap.count)).all()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-4)


def test_faiss_agrees_with_brute_force(built: Built) -> None:
    vectors = np.asarray(built.snapshot.vectors)
    rng = np.random.default_rng(7)
    queries = rng.normal(size=(20, vectors.shape[1])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    queries = np.vstack([queries, vectors[rng.choice(len(vectors), 20, replace=False)]])
    scores, ids = neighbours.search(built.snapshot.index, queries, 10)
    brute = queries @ vectors.T
    expected = np.argsort(-brute, axis=1, kind="stable")[:, :10]
    np.testing.assert_allclose(scores, np.take_along_axis(brute, expected, 1), atol=1e-5)
    # Ids may differ only where scores tie.
    same = ids == expected
    tied = np.isclose(np.take_along_axis(brute, ids, 1), np.take_along_axis(brute, expected, 1))
    assert (same | tied).all()


def _embed_bytes(built: Built, data: bytes) -> np.ndarray:
    embedder = Embedder(built.snapshot.model_path, threads=1)
    pixels = center_crop(decode_image(data).image, embedder.input_size)
    return embedder.embed(pixels[None])[0]


def _variants(im: Image.Image) -> list[bytes]:
    w, h = im.size
    out = []
    small = im.resize((w * 6 // 10, h * 6 // 10), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=60)
    out.append(buf.getvalue())
    crop = im.crop((w // 10, h // 10, w - w // 10, h - h // 10))
    buf = io.BytesIO()
    crop.save(buf, format="PNG")
    out.append(buf.getvalue())
    buf = io.BytesIO()
    im.save(buf, format="WEBP", quality=70)
    out.append(buf.getvalue())
    return out


def test_edited_copies_of_photos_find_their_original(built: Built) -> None:
    snap = built.snapshot
    photo_rows = [r for r in snap.rows if r.label == "photos"][::8]
    assert len(photo_rows) >= 10
    misses = []
    for row in photo_rows:
        original = decode_image(built.collection / row.path).image
        for variant in _variants(original):
            _, ids = neighbours.search(snap.index, _embed_bytes(built, variant), 3)
            if row.id not in ids[0]:
                misses.append(row.path)
    assert not misses, f"edited copies that missed their original in the top 3: {misses}"


def test_bad_files_are_skipped_with_a_report(tmp_path: Path, models_dir: Path) -> None:
    collection = tmp_path / "collection"
    good = sample_images()[:6]
    for src in good:
        (collection / "ok").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, collection / "ok" / src.name)
    png = good[0].read_bytes()
    (collection / "bad").mkdir()
    (collection / "bad" / "truncated.png").write_bytes(png[: len(png) // 3])
    (collection / "bad" / "empty.jpg").write_bytes(b"")
    (collection / "bad" / "text.jpg").write_bytes(b"this is not a jpeg at all" * 10)
    (collection / "bad" / "svg.png").write_bytes(b"<svg xmlns='http://www.w3.org/2000/svg'/>")
    report = build(collection, fresh_data_dir(tmp_path, models_dir))
    assert report.indexed == 6
    reasons = {s.path: s.reason for s in report.skipped}
    assert set(reasons) == {"bad/truncated.png", "bad/empty.jpg", "bad/text.jpg", "bad/svg.png"}
    assert "empty" in reasons["bad/empty.jpg"]
    assert "not a recognised image" in reasons["bad/text.jpg"]
    manifest = open_snapshot(tmp_path / "data").manifest
    assert manifest.build is not None and manifest.build.skipped_count == 4


def test_rebuild_embeds_only_new_files(tmp_path: Path, models_dir: Path) -> None:
    collection = make_collection(tmp_path / "collection", photos=10)
    data = fresh_data_dir(tmp_path, models_dir)
    first = build(collection, data)
    assert first.embedded == first.indexed and first.reused == 0

    removed = sorted((collection / "birds").iterdir())[:2]
    for path in removed:
        path.unlink()
    extra = sorted((Path(__file__).resolve().parent.parent / "images" / "fish").glob("*.png"))
    added = [p for p in extra if not (collection / "fish" / p.name).exists()][:3]
    for src in added:
        shutil.copyfile(src, collection / "fish" / src.name)
    # The same content under a second name costs no embedding either.
    shutil.copyfile(collection / "fish" / added[0].name, collection / "fish" / "copy.png")

    second = build(collection, data)
    assert second.embedded == 3
    assert second.indexed == first.indexed - 2 + 4
    assert second.reused == second.indexed - 3
    snap = open_snapshot(data)
    paths = {row.path for row in snap.rows}
    assert not any(f"birds/{p.name}" in paths for p in removed)
    assert "fish/copy.png" in paths
    third = build(collection, data)
    assert third.embedded == 0 and third.indexed == second.indexed


def cache_rows(data: Path) -> int:
    caches = list((data / "cache").glob("embeddings-*.sqlite"))
    if not caches:
        return 0
    try:
        db = sqlite3.connect(f"file:{caches[0]}?mode=ro", uri=True, timeout=0.1)
        try:
            return int(db.execute("SELECT count(*) FROM embeddings").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def test_killed_build_never_publishes_a_partial_snapshot(tmp_path: Path, models_dir: Path) -> None:
    collection = make_collection(tmp_path / "collection", photos=120)
    data = fresh_data_dir(tmp_path, models_dir)
    # A first, complete snapshot of part of the collection.
    shutil.move(collection / "photos", tmp_path / "held-back")
    before = build(collection, data)
    shutil.move(tmp_path / "held-back", collection / "photos")

    cmd = [
        sys.executable,
        "-m",
        "service.cli",
        "index",
        str(collection),
        "--data",
        str(data),
        "--quiet",
        "--batch-size",
        "8",
    ]
    proc = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parent.parent)
    deadline = time.monotonic() + 120
    while cache_rows(data) <= before.indexed and time.monotonic() < deadline:
        assert proc.poll() is None, "the build finished before it could be interrupted"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = cache_rows(data)
    assert before.indexed < done < before.indexed + 120, "kill landed outside embedding"

    assert current_id(data) == before.snapshot_id
    assert open_snapshot(data).count == before.indexed

    resumed = build(collection, data)
    assert resumed.embedded == before.indexed + 120 - done  # only what was lost or left
    assert resumed.indexed == before.indexed + 120
    assert current_id(data) == resumed.snapshot_id
    assert not list((data / "snapshots").glob(".tmp-*"))


def test_an_unusable_cache_row_is_dropped_and_embedded_again(
    tmp_path: Path, models_dir: Path
) -> None:
    collection = tmp_path / "collection"
    for src in sample_images()[:12]:
        (collection / src.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, collection / src.parent.name / src.name)
    data = fresh_data_dir(tmp_path, models_dir)
    first = build(collection, data, layouts="grid")
    snap = open_snapshot(data)
    torn = snap.rows[3]
    vector = np.array(snap.vectors[3])
    (cache,) = (data / "cache").glob("embeddings-*.sqlite")
    db = sqlite3.connect(cache)
    with db:
        db.execute("UPDATE embeddings SET vector = X'0000' WHERE sha256 = ?", (torn.sha256,))
    db.close()
    del snap
    shutil.rmtree(data / "snapshots")  # nothing to carry: every row comes from the cache
    (data / "CURRENT").unlink()
    with pytest.raises(CacheRowLost, match=torn.path):
        build(collection, data, layouts="grid")
    assert current_id(data) is None  # nothing half-made was published
    again = build(collection, data, layouts="grid")
    assert again.embedded == 1 and again.indexed == first.indexed
    snap = open_snapshot(data)
    row = snap.row_of(torn.id)
    assert row is not None
    np.testing.assert_allclose(snap.vectors[row], vector, atol=1e-5)
