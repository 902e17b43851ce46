"""Layouts, quality figures, clusters and atlases: pure functions and the built snapshot."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from indexer import index as faiss_index
from indexer import layout, neighbours
from indexer.atlas import build_atlases, locate
from indexer.mapfit import compute_maps, fit_sample
from indexer.maps import knn_preservation, trustworthiness
from indexer.snapshot import open_snapshot

from .conftest import Built

# Floors for the test snapshot (~200 images: 80 clip-art stamps in 20 folders and
# 120 photos). A random arrangement scores ~0.5 trustworthiness and ~0.05 k-NN
# preservation; measured here t-SNE and UMAP reach ~0.86-0.88 and the grid ~0.81
# (as on the 1,003-image sample collection: 0.89 / 0.87 / 0.83). The floors leave
# room for seed and library drift while still failing a scrambled or broken map.
TRUST_FLOOR = {"tsne": 0.78, "umap": 0.78, "grid": 0.72}
KNN_FLOOR = {"tsne": 0.25, "umap": 0.25, "grid": 0.2}


def _cells(snap_maps: dict, positions: np.ndarray) -> np.ndarray:
    grid = snap_maps["layouts"]["grid"]["grid"]
    return layout.position_cells(positions, grid["cols"], grid["rows"])


# ---------------------------------------------------------------- the built snapshot


def test_every_image_has_one_position_per_layout_in_unit_square(built: Built) -> None:
    snap = built.snapshot
    assert snap.manifest.layouts == ("tsne", "umap", "grid")
    assert set(snap.layouts) == {"tsne", "umap", "grid"}
    for name, pos in snap.layouts.items():
        assert pos.shape == (snap.count, 2) and pos.dtype == np.float32, name
        assert np.isfinite(pos).all() and pos.min() >= 0.0 and pos.max() <= 1.0, name
        # Aspect kept: one axis spans [0, 1] exactly, the other is centred in it.
        spans = pos.max(axis=0) - pos.min(axis=0)
        assert spans.max() == pytest.approx(1.0, abs=1e-3) or name == "grid"
        mid = (pos.max(axis=0) + pos.min(axis=0)) / 2
        assert mid == pytest.approx([0.5, 0.5], abs=1e-3)


def test_grid_cells_are_unique_and_inside_the_grid(built: Built) -> None:
    snap = built.snapshot
    cells = _cells(dict(snap.maps), snap.layouts["grid"])
    grid = snap.maps["layouts"]["grid"]["grid"]
    assert len({(int(c), int(r)) for c, r in cells}) == snap.count
    assert (cells >= 0).all() and (cells[:, 0] < grid["cols"]).all()
    assert (cells[:, 1] < grid["rows"]).all()
    assert (grid["cols"], grid["rows"]) == layout.grid_shape(snap.count)
    # Room for later additions: ~10% spare cells, left where the layout is thin.
    assert grid["cols"] * grid["rows"] >= snap.count * (1 + layout.GRID_SLACK)


def test_quality_figures_are_recorded_and_above_floor(built: Built) -> None:
    maps = built.snapshot.manifest.maps
    assert maps is not None
    for name in ("tsne", "umap", "grid"):
        quality = maps[name]["quality"]
        assert quality["trustworthiness"] >= TRUST_FLOOR[name], (name, quality)
        assert quality["knn_preservation"] >= KNN_FLOOR[name], (name, quality)
        assert quality["k"] == 10 and quality["sample"] == built.snapshot.count
        assert maps[name]["params"]["seed"] == 0
    assert maps["tsne"]["params"]["perplexity"] == 30.0
    assert maps["umap"]["params"]["n_neighbors"] == 15
    assert maps["umap"]["params"]["min_dist"] == 0.1
    assert maps["grid"]["params"]["source"] == "tsne"
    assert maps["fit"]["sample"] == built.snapshot.count and maps["fit"]["placed"] == 0
    assert maps["atlas"]["format"] == "webp" and maps["atlas"]["cells"] == [32, 128]
    # The figure is what it claims to be: recomputed from the stored arrays.
    snap = built.snapshot
    tw = trustworthiness(np.asarray(snap.vectors), snap.layouts["umap"])
    assert tw == pytest.approx(maps["umap"]["quality"]["trustworthiness"], abs=1e-4)


def test_layouts_keep_neighbours_together_better_than_chance(built: Built) -> None:
    snap = built.snapshot
    vectors = np.asarray(snap.vectors)
    _, knn_ids = neighbours.knn_self(snap.index, vectors, 10)
    shuffled = np.random.default_rng(0).permutation(snap.layouts["umap"])
    chance = knn_preservation(knn_ids, shuffled)
    assert chance is not None and chance < 0.15
    for name, pos in snap.layouts.items():
        kept = knn_preservation(knn_ids, pos)
        assert kept is not None and kept > 3 * chance, name


def test_clusters_cover_every_image_with_a_member_representative(built: Built) -> None:
    snap = built.snapshot
    clusters = snap.maps["clusters"]
    assert snap.clusters is not None and snap.clusters.shape == (snap.count,)
    assert len(clusters) == snap.manifest.maps["clustering"]["k"]  # type: ignore[index] >= 2
    assert sum(c["size"] for c in clusters) == snap.count
    for c in clusters:
        members = np.flatnonzero(snap.clusters == c["id"])
        assert len(members) == c["size"] and c["representative"] in members
        labels = [snap.rows[i].label for i in members]
        if c["label"] is not None:
            assert labels.count(c["label"]) == max(labels.count(x) for x in set(labels) - {None})
            # Stored rounded to 3 places: equal to within one unit of the last place.
            share = labels.count(c["label"]) / len(labels)
            assert c["label_share"] == pytest.approx(share, abs=1e-3)
        assert set(c["centers"]) == {"tsne", "umap", "grid"}
    # The photos (one folder) and the clip-art stamps are told apart.
    photo_clusters = {c["id"] for c in clusters if c["label"] == "photos"}
    assert photo_clusters and len(photo_clusters) < len(clusters)


def test_atlas_cells_hold_their_images(built: Built) -> None:
    snap = built.snapshot
    index = snap.atlas
    assert index["count"] == snap.count
    for image_id in (0, snap.count // 2, snap.count - 1):
        expected = ImageOps.fit(Image.open(snap.thumbnail_path(image_id)).convert("RGB"), (32, 32))
        sheet_no, x, y = locate(dict(index), image_id, 32)
        sheet = index["sizes"][0]["sheets"][sheet_no]
        got = Image.open(snap.path / sheet["file"]).convert("RGB").crop((x, y, x + 32, y + 32))
        diff = np.abs(np.asarray(got, float) - np.asarray(expected, float)).mean()
        assert diff < 20, (image_id, diff)  # lossy WebP; another image differs by ~60+


def test_snapshots_without_maps_still_open(built: Built, tmp_path: Path) -> None:
    data = tmp_path / "data"
    old = data / "snapshots" / built.snapshot.id
    shutil.copytree(built.snapshot.path, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for name in list(manifest["files"]):
        if name.startswith(("layouts/", "atlas/")) or name in ("maps.json", "clusters.npy"):
            del manifest["files"][name]
    manifest["layouts"] = []
    manifest.pop("maps")
    (old / "manifest.json").write_text(json.dumps(manifest))
    for name in ("layouts", "atlas"):
        shutil.rmtree(old / name)
    (old / "maps.json").unlink()
    (old / "clusters.npy").unlink()
    (data / "CURRENT").write_text(built.snapshot.id + "\n")
    snap = open_snapshot(data)
    assert snap.layouts == {} and snap.clusters is None and not snap.maps and not snap.atlas


# ---------------------------------------------------------------- pure functions


def test_seeds_make_layouts_reproducible(built: Built) -> None:
    vectors = np.asarray(built.snapshot.vectors)[:120]
    index = faiss_index.build_index(vectors)
    sims, ids = neighbours.knn_self(index, vectors, 90)
    labels: list[str | None] = [None] * len(vectors)
    runs = [
        compute_maps(vectors, sims, ids, labels=labels, params=layout.LayoutParams(seed=s))
        for s in (7, 7, 8)
    ]
    for name in ("tsne", "umap", "grid"):
        assert np.array_equal(runs[0].layouts[name], runs[1].layouts[name]), name
    assert np.array_equal(runs[0].clusters, runs[1].clusters)
    assert not np.array_equal(runs[0].layouts["umap"], runs[2].layouts["umap"])
    assert runs[0].info["seed"] == 7 and runs[2].info["layouts"]["tsne"]["params"]["seed"] == 8


def test_blocked_grid_assignment_is_one_to_one_and_keeps_neighbourhoods() -> None:
    rng = np.random.default_rng(1)
    centres = rng.random((12, 2)) * [3.0, 1.0]  # a wide layout, clumped
    points = centres[rng.integers(0, 12, 3000)] + rng.normal(0, 0.05, (3000, 2))
    cells, cols, rows = layout.grid_cells(points, block=200)  # many blocks
    assert (cols, rows) == layout.grid_shape(3000) == (58, 57)  # 3,300 cells: 10% spare
    assert len({(int(c), int(r)) for c, r in cells}) == 3000
    assert (cells >= 0).all() and (cells[:, 0] < cols).all() and (cells[:, 1] < rows).all()
    pos = layout.grid_positions(cells, cols, rows)
    assert np.array_equal(layout.position_cells(pos, cols, rows), cells)
    ids = np.argsort(((points[:, None] - points[None]) ** 2).sum(-1), axis=1)[:, 1:11]
    kept = knn_preservation(ids, pos)
    assert kept is not None and kept > 0.25  # chance is ~10 / 3000


def test_normalise_keeps_the_aspect_ratio() -> None:
    pts = np.array([[-2.0, 10.0], [2.0, 12.0], [0.0, 11.0]])
    out = layout.normalise(pts)
    assert out[:, 0].tolist() == [0.0, 1.0, 0.5]
    assert out[:, 1] == pytest.approx([0.25, 0.75, 0.5])  # span 2 of 4, centred
    assert layout.normalise(np.ones((3, 2))).tolist() == [[0.5, 0.5]] * 3
    assert layout.normalise(np.zeros((0, 2))).shape == (0, 2)


@pytest.mark.parametrize("n", [0, 1, 2, 5, 9])
def test_tiny_collections_still_get_maps(n: int) -> None:
    rng = np.random.default_rng(n)
    vectors = rng.normal(size=(n, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True) if n else 1
    index = faiss_index.build_index(vectors)
    sims, ids = neighbours.knn_self(index, vectors, 90)
    maps = compute_maps(vectors, sims, ids, labels=["a"] * n)
    for name, pos in maps.layouts.items():
        assert pos.shape == (n, 2) and (pos >= 0).all() and (pos <= 1).all(), name
    assert maps.clusters.shape == (n,)
    json.dumps(maps.info)  # storable as it is


def test_place_lands_on_a_duplicate_and_ignores_a_distant_island() -> None:
    pos = np.array([[0.2, 0.2], [0.22, 0.21], [0.9, 0.9], [0.21, 0.19]], np.float32)
    assert layout.place(np.array([1.0, 0.8, 0.79]), np.array([0, 1, 2]), pos) == pytest.approx(
        (0.2, 0.2), abs=1e-3
    )
    # Two near-equal matches far apart: no landing in the empty middle.
    x, y = layout.place(np.array([0.7, 0.7, 0.69, -1]), np.array([0, 2, 3, -1]), pos) or (0, 0)
    assert abs(x - 0.2) < 0.02 and abs(y - 0.2) < 0.02
    assert layout.place(np.array([0.5]), np.array([-1]), pos) is None


def test_parameters_are_validated() -> None:
    assert layout.parse_layouts("grid, tsne") == ("tsne", "grid")
    assert layout.parse_layouts(None) == ("tsne", "umap", "grid")
    with pytest.raises(ValueError, match="unknown layout"):
        layout.parse_layouts("tsne,pca")
    with pytest.raises(ValueError, match="perplexity"):
        layout.LayoutParams(perplexity=0.5)
    with pytest.raises(ValueError, match="min_dist"):
        layout.LayoutParams(min_dist=2)
    with pytest.raises(ValueError, match="sample"):
        layout.LayoutParams(sample=10)
    assert layout.knn_needed(("umap",), layout.LayoutParams(n_neighbors=50)) == 49
    assert layout.knn_needed(("tsne",), layout.LayoutParams()) == 90


def test_atlas_sheets_follow_the_rule() -> None:
    thumbs = []
    for i in range(70):
        buf = io.BytesIO()
        Image.new("RGB", (40 + i, 30), (i * 3, 255 - i * 3, 128)).save(buf, "JPEG")
        thumbs.append(buf.getvalue())
    thumbs.append(b"not a jpeg")  # a broken thumbnail gets the background, not an error
    files, index = build_atlases(
        range(len(thumbs)), thumbs.__getitem__, sizes=(16, 32), sheet_size=128, fmt="jpeg"
    )
    assert sorted(files) == sorted(
        ["atlas/index.json"]
        + [f"atlas/16-{i}.jpg" for i in range(2)]
        + ["atlas/32-0.jpg"]
        + [f"atlas/32-{i}.jpg" for i in range(1, 5)]
    )
    assert json.loads(files["atlas/index.json"]) == index
    sheet_no, x, y = locate(index, 69, 16)
    assert (sheet_no, x, y) == (1, 5 * 16, 0)  # 64 per sheet: the 6th of the second
    cell = (
        Image.open(io.BytesIO(files["atlas/16-1.jpg"])).convert("RGB").crop((x, y, x + 16, y + 16))
    )
    assert np.abs(np.asarray(cell, float).mean(axis=(0, 1)) - [207, 48, 128]).max() < 12
    last = index["sizes"][0]["sheets"][-1]
    assert last["count"] == 7 and last["height"] == 16  # the last sheet is only as tall as used


def test_layouts_fit_on_a_sample_and_place_the_rest(built: Built) -> None:
    vectors = np.asarray(built.snapshot.vectors)
    n = len(vectors)
    index = faiss_index.build_index(vectors)
    sims, ids = neighbours.knn_self(index, vectors, 90)
    labels: list[str | None] = [None] * n
    params = layout.LayoutParams(sample=100)
    maps = compute_maps(vectors, sims, ids, labels=labels, params=params)
    fit = maps.info["fit"]
    assert fit["sample"] == 100 and fit["placed"] == n - 100 and fit["limit"] == 100
    sample = fit_sample(n, 100, seed=0)
    assert sample is not None and len(np.unique(sample)) == 100
    rest = np.setdiff1d(np.arange(n), sample)
    for name, pos in maps.layouts.items():
        assert pos.shape == (n, 2) and np.isfinite(pos).all(), name
        assert pos.min() >= 0.0 and pos.max() <= 1.0, name
        quality = maps.info["layouts"][name]["quality"]
        assert quality["trustworthiness"] >= TRUST_FLOOR[name] - 0.05, (name, quality)
    cells = layout.position_cells(
        maps.layouts["grid"],
        **{k: maps.info["layouts"]["grid"]["grid"][k] for k in ("cols", "rows")},
    )
    assert len({(int(c), int(r)) for c, r in cells}) == n
    # A placed image sits with its nearest sample image (place(): weighted towards it).
    sub = vectors[sample]
    nearest = sample[np.argmax(vectors[rest] @ sub.T, axis=1)]
    for name in ("tsne", "umap"):
        pos = maps.layouts[name]
        gap = np.linalg.norm(pos[rest] - pos[nearest], axis=1)
        assert np.median(gap) <= layout.PLACE_RADIUS / 2, name
    # Seeded: the same sample and the same map again; the whole set when it fits.
    again = compute_maps(vectors, sims, ids, labels=labels, params=params)
    assert np.array_equal(again.layouts["tsne"], maps.layouts["tsne"])
    whole = compute_maps(vectors, sims, ids, labels=labels, layouts=("umap",))
    assert "fit" not in whole.info and fit_sample(n, n) is None


def _place_reference(scores: np.ndarray, ids: np.ndarray, positions: np.ndarray):
    """place() as first written, one query at a time: what place_many must match."""
    keep = ids >= 0
    s, i = np.asarray(scores, np.float64)[keep][: layout.PLACE_K], ids[keep][: layout.PLACE_K]
    if len(i) == 0:
        return None
    pos = positions[i].astype(np.float64)
    near = np.linalg.norm(pos - pos[0], axis=1) <= layout.PLACE_RADIUS
    w = np.exp((s[near] - s[0]) / layout.PLACE_TEMPERATURE)
    return (pos[near] * w[:, None]).sum(axis=0) / w.sum()


def test_batched_placement_matches_one_at_a_time() -> None:
    rng = np.random.default_rng(3)
    positions = rng.random((50, 2)).astype(np.float32)
    ids = rng.integers(-1, 50, (40, 14))  # -1 anywhere, not only at the end
    ids[5] = -1
    scores = np.sort(rng.random((40, 14)), axis=1)[:, ::-1]
    many = layout.place_many(scores, ids, positions)
    for row in range(40):
        want = _place_reference(scores[row], ids[row], positions)
        if want is None:
            assert np.isnan(many[row]).all()
            assert layout.place(scores[row], ids[row], positions) is None
        else:
            assert many[row] == pytest.approx(want)
            assert layout.place(scores[row], ids[row], positions) == pytest.approx(tuple(want))
    assert np.isnan(many[5]).all()
