"""Incremental rebuilds: stable ids, neighbours and maps carried over, nothing moved."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from indexer import index as faiss_index
from indexer import neighbours, update
from indexer.atlas import build_atlases, locate
from indexer.build import build
from indexer.layout import position_cells
from indexer.manifest import UpdateEntry
from indexer.maps import trustworthiness
from indexer.snapshot import Snapshot, open_snapshot
from service.app import create_app
from service.routes.maps import decode_binary
from service.settings import Settings

from .conftest import IMAGES, fresh_data_dir, make_collection


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(12, dim))
    x = centres[rng.integers(0, 12, n)] + 0.4 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_ids_follow_paths_and_are_never_reused() -> None:
    ids, next_id = update.assign_ids(["a", "c", "d"], {"a": 0, "b": 1, "c": 2}, 3)
    assert ids.tolist() == [0, 2, 3] and next_id == 4
    # "d" was deleted (id 3) and "e" is new: it must not inherit 3.
    ids, next_id = update.assign_ids(["a", "e"], {"a": 0}, 4)
    assert ids.tolist() == [0, 4] and next_id == 5


def test_carried_rows_need_the_same_id_and_content() -> None:
    carried = update.carried_rows(
        np.array([0, 2, 5, 7]), ["h0", "h2x", "h5", "h7"], np.array([0, 2, 5]), ["h0", "h2", "h5"]
    )
    assert carried.tolist() == [0, -1, 2, -1]


def test_updated_neighbours_equal_a_full_pass() -> None:
    before = clustered(3000, seed=1)
    old_index = faiss_index.build_index(before)
    prev_sims, prev_ids = neighbours.knn_self(old_index, before, 15)
    # Delete 20 rows, change 10, add 300.
    rng = np.random.default_rng(2)
    keep = np.sort(rng.choice(3000, 2980, replace=False))
    after = np.concatenate([before[keep], clustered(300, seed=3)])
    carried = np.r_[keep, np.full(300, -1)]
    changed = rng.choice(2980, 10, replace=False)
    after[changed] = clustered(10, seed=4)
    carried[changed] = -1
    index = faiss_index.build_index(after)
    sims, ids, redone = update.update_knn(index, after, carried, prev_sims, prev_ids)
    full_sims, full_ids = neighbours.knn_self(index, after, 15)
    assert redone < len(after) / 2  # it did not just recompute everything
    np.testing.assert_allclose(sims, full_sims, atol=1e-5)
    same = [len(set(a) & set(b)) for a, b in zip(ids, full_ids, strict=True)]
    assert np.mean(same) > 14.9  # identical lists, up to ties at the k-th place


def test_new_images_get_free_grid_cells_and_old_ones_stay() -> None:
    x = clustered(90)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, ids = neighbours.knn_self(index, x, 10)
    cols, rows = 10, 10
    cells = np.stack([np.arange(90) % 10, np.arange(90) // 10], axis=1)
    from indexer.layout import grid_positions

    pos = grid_positions(cells, cols, rows)
    dirty = np.zeros(90, dtype=bool)
    dirty[[3, 40, 77]] = True
    placed = update.place_on_grid(pos, sims, ids, dirty, cols, rows)
    assert placed is not None
    np.testing.assert_array_equal(placed[~dirty], pos[~dirty])
    got = position_cells(placed, cols, rows)
    assert len({tuple(c) for c in got}) == 90  # one image per cell
    grown = np.concatenate([pos, pos[:20]])  # 110 images cannot fit 100 cells
    dirty2 = np.r_[np.zeros(90, bool), np.ones(20, bool)]
    sims2, ids2 = neighbours.knn_self(index, x, 10)
    ids2 = np.concatenate([ids2, ids2[:20]])
    sims2 = np.concatenate([sims2, sims2[:20]])
    assert update.place_on_grid(grown, sims2, ids2, dirty2, cols, rows) is None


def test_trustworthiness_matches_scikit_learn() -> None:
    from sklearn.manifold import trustworthiness as sk_trust

    x = clustered(400, seed=5)
    layout = x[:, :2] + 0.05 * np.random.default_rng(6).normal(size=(400, 2))
    ours = trustworthiness(x, layout, k=10, sample=400)
    assert ours == pytest.approx(sk_trust(x, layout, n_neighbors=10), abs=1e-9)


def _positions(snap: Snapshot) -> dict[str, dict[str, tuple[float, float]]]:
    return {
        name: {r.path: tuple(pos[i]) for i, r in enumerate(snap.rows)}
        for name, pos in snap.layouts.items()
    }


@pytest.fixture(scope="module")
def updated(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> dict[str, object]:
    base = tmp_path_factory.mktemp("update")
    collection = make_collection(base / "collection", photos=10)
    data = fresh_data_dir(base, models_dir)
    build(collection, data)
    first = open_snapshot(data)
    removed = sorted((collection / "birds").iterdir())[:2]
    for path in removed:
        path.unlink()
    changed = sorted((collection / "fish").iterdir())[0]
    shutil.copyfile(sorted((IMAGES / "fruit").glob("*.png"))[-1], changed)  # same path, new content
    added = sorted((IMAGES / "vehicles").glob("*.png"))[-4:]
    for src in added:
        shutil.copyfile(src, collection / "vehicles" / f"new-{src.name}")
    build(collection, data)
    second = open_snapshot(data)
    return {
        "collection": collection,
        "data": data,
        "first": first,
        "second": second,
        "removed": [f"birds/{p.name}" for p in removed],
        "changed": f"fish/{changed.name}",
        "added": [f"vehicles/new-{p.name}" for p in added],
    }


def test_an_image_keeps_its_id_and_deleted_ids_stay_unused(updated: dict) -> None:
    first: Snapshot = updated["first"]
    second: Snapshot = updated["second"]
    old = {r.path: r.id for r in first.rows}
    new = {r.path: r.id for r in second.rows}
    for path, image_id in new.items():
        if path in old:
            assert image_id == old[path], path  # the changed file keeps its id too
    for path in updated["removed"]:
        assert path not in new
    fresh = [new[p] for p in updated["added"]]
    assert min(fresh) > max(old.values())  # deleted ids are not handed out again
    assert second.manifest.next_id == max(new.values()) + 1
    assert second.manifest.update == UpdateEntry(
        previous=first.id, kept=len(new) - 5, new_or_changed=5, removed=2
    )


def test_old_images_do_not_move_and_new_ones_land_among_neighbours(updated: dict) -> None:
    first: Snapshot = updated["first"]
    second: Snapshot = updated["second"]
    before, after = _positions(first), _positions(second)
    assert second.maps["update"]["mode"] == "placed"
    assert second.maps["update"]["placed"] == 5
    for name in ("tsne", "umap", "grid"):
        for path, xy in after[name].items():
            if path in before[name] and path != updated["changed"]:
                assert xy == before[name][path], (name, path)
        pos = second.layouts[name]
        assert np.isfinite(pos).all() and pos.min() >= 0 and pos.max() <= 1
    cols, rows = (second.maps["layouts"]["grid"]["grid"][k] for k in ("cols", "rows"))
    cells = position_cells(second.layouts["grid"], cols, rows)
    assert len({tuple(c) for c in cells}) == second.count
    # Each new image lands beside its nearest unchanged neighbour in the embedding.
    tsne = second.layouts["tsne"]
    vectors = np.asarray(second.vectors)
    unchanged = np.array([r.path in before["tsne"] for r in second.rows])
    unchanged &= np.array([r.path != updated["changed"] for r in second.rows])
    for path in updated["added"]:
        row = next(i for i, r in enumerate(second.rows) if r.path == path)
        sims = np.where(unchanged, vectors @ vectors[row], -np.inf)
        nearest = int(np.argmax(sims))
        d = np.linalg.norm(tsne - tsne[row], axis=1)
        assert d[nearest] <= 0.1 < np.median(d), path


def test_unchanged_atlas_sheets_and_thumbnails_are_reused(updated: dict) -> None:
    first: Snapshot = updated["first"]
    second: Snapshot = updated["second"]
    new = {r.path: r.id for r in second.rows}
    kept = next(i for p, i in new.items() if p.startswith("photos/"))
    a, b = first.thumbnail_path(kept), second.thumbnail_path(kept)
    assert a.stat().st_ino == b.stat().st_ino  # a hard link, not a copy
    removed = {r.id for r in first.rows if r.path in updated["removed"]}
    assert not any(second.thumbnail_path(i).exists() for i in removed)
    assert second.atlas["count"] == int(second.ids.max()) + 1


def test_relayout_recomputes_the_maps(updated: dict) -> None:
    build(updated["collection"], updated["data"], relayout=True)
    third = open_snapshot(updated["data"])
    assert third.maps["update"]["mode"] == "full"
    assert third.ids.tolist() == updated["second"].ids.tolist()


def test_the_service_speaks_ids_with_gaps(updated: dict, tmp_path: Path) -> None:
    data: Path = updated["data"]
    snap = open_snapshot(data)
    first: Snapshot = updated["first"]
    gone = next(r.id for r in first.rows if r.path in updated["removed"])
    with TestClient(create_app(Settings(data_dir=data, reload_interval_s=3600))) as client:
        assert client.get(f"/api/images/{gone}").status_code == 404
        assert client.get(f"/api/images/{gone}/thumbnail").status_code == 404
        last = int(snap.ids[-1])
        body = client.get(f"/api/images/{last}").json()
        assert body["path"] == snap.rows[-1].path
        similar = client.get(f"/api/images/{last}/similar?k=5").json()
        assert all(snap.row_of(r["id"]) is not None for r in similar["results"])
        assert last not in {r["id"] for r in similar["results"]}
        header, cols = decode_binary(client.get("/api/maps/tsne").content)
        assert cols["id"].tolist() == snap.ids.tolist()
        page = client.get("/api/images?offset=3&limit=4").json()
        assert [i["id"] for i in page["images"]] == snap.ids[3:7].tolist()
        assert page["total"] == snap.count
        source, target = int(snap.ids[0]), last
        chain = client.get(f"/api/path?source={source}&target={target}").json()["chain"]
        assert chain[0]["image"]["id"] == source and chain[-1]["image"]["id"] == target
        assert all(snap.row_of(step["image"]["id"]) is not None for step in chain)
        assert client.get(f"/api/path?source={source}&target={gone}").status_code == 404
        reps = [c["representative"] for c in client.get("/api/maps").json()["clusters"]]
        assert all(snap.row_of(r) is not None for r in reps)


def test_atlas_cells_go_by_id_and_clean_sheets_are_kept() -> None:
    def thumb(i: int) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (40, 40), (i % 256, 255 - i % 256, 90)).save(buf, "JPEG")
        return buf.getvalue()

    asked: list[int] = []

    def fetch(i: int) -> bytes:
        asked.append(i)
        return thumb(i)

    ids = [0, 1, 2, 5, 70, 130]  # gaps where images were removed
    files, index = build_atlases(ids, fetch, sizes=(16,), sheet_size=128, fmt="jpeg")
    assert index["count"] == 131 and len(index["sizes"][0]["sheets"]) == 3  # 64 per sheet
    assert sorted(asked) == ids
    sheet, x, y = locate(index, 70, 16)
    cell = Image.open(io.BytesIO(files[f"atlas/16-{sheet}.jpg"])).convert("RGB")
    assert (
        np.abs(
            np.asarray(cell.crop((x, y, x + 16, y + 16)), float).mean((0, 1)) - [70, 185, 90]
        ).max()
        < 12
    )

    # Only the sheet holding a changed id is made again; the others come back as they were.
    asked.clear()
    before = {
        sh["file"]: (sh["first"], sh["count"], sh["height"]) for sh in index["sizes"][0]["sheets"]
    }

    def keep(name: str, first: int, count: int, height: int) -> bytes | None:
        clean = before.get(name) == (first, count, height) and not first <= 70 < first + count
        return files[name] if clean else None

    again, _ = build_atlases(ids, fetch, keep=keep, sizes=(16,), sheet_size=128, fmt="jpeg")
    assert asked == [70]
    assert again["atlas/16-0.jpg"] == files["atlas/16-0.jpg"]
