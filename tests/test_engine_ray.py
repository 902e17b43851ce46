"""The Ray engine on a real local Ray runtime: same snapshot as the local engine.

Ray is the `ray` extra, which the test setup installs: a missing Ray fails here
rather than skipping, so CI cannot pass without exercising the engine.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import ray
from PIL import Image

from indexer.build import build
from indexer.cache import CachedItem
from indexer.digest import sha256_file
from indexer.engine_ray import plan_pool, read_shard, write_shard
from indexer.snapshot import Snapshot, open_snapshot
from indexer.thumbs import make_thumbnail
from service.cli import main

from .conftest import fresh_data_dir, sample_images, sample_photos

N_IMAGES = 20
N_PHOTOS = 10


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """A local Ray runtime with 2 CPUs, the size of the build machines."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield
    finally:
        ray.shutdown()


def _collection(dest: Path) -> Path:
    """Sample images, a few photos, a corrupt file and a duplicate under another name."""
    images = sample_images()
    for src in images[:: max(1, len(images) // N_IMAGES)][:N_IMAGES]:
        target = dest / src.parent.name / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    for src in sample_photos(N_PHOTOS):
        (dest / "photos").mkdir(exist_ok=True)
        shutil.copyfile(src, dest / "photos" / src.name)
    png = images[0].read_bytes()
    (dest / "bad").mkdir()
    (dest / "bad" / "truncated.png").write_bytes(png[: len(png) // 3])
    shutil.copyfile(images[0], dest / "bad" / "same-as-first.png")
    return dest


def _thumbnails(snap: Snapshot) -> list[bytes]:
    return [snap.thumbnail_path(i).read_bytes() for i in range(snap.count)]


def test_ray_snapshot_equals_local(ray_cluster: None, tmp_path: Path, models_dir: Path) -> None:
    collection = _collection(tmp_path / "collection")
    local_data = fresh_data_dir(tmp_path / "local", models_dir)
    ray_data = fresh_data_dir(tmp_path / "ray", models_dir)
    local = build(collection, local_data, batch_size=8, layouts="grid")
    remote = build(collection, ray_data, batch_size=8, layouts="grid", engine="ray")

    assert remote.indexed == local.indexed > N_IMAGES
    assert remote.embedded == local.embedded and remote.reused == local.reused == 1  # the copy
    assert remote.skipped == local.skipped
    assert [s.path for s in remote.skipped] == ["bad/truncated.png"]
    a, b = open_snapshot(local_data), open_snapshot(ray_data)
    assert a.rows == b.rows
    assert a.manifest.build is not None and b.manifest.build is not None
    assert a.manifest.build.skipped == b.manifest.build.skipped
    # Different batch shapes and thread counts may round differently, nothing more.
    np.testing.assert_allclose(np.asarray(b.vectors), np.asarray(a.vectors), atol=1e-5)
    assert _thumbnails(a) == _thumbnails(b)
    # Every shard was ingested into the cache and removed.
    assert not list((ray_data / "shards").rglob("*.npz"))

    again = build(collection, ray_data, batch_size=8, layouts="grid", engine="ray")
    assert again.embedded == 0 and again.reused == local.indexed


def test_shards_left_by_a_crashed_run_are_ingested_not_recomputed(
    ray_cluster: None, tmp_path: Path, models_dir: Path
) -> None:
    collection = tmp_path / "collection"
    collection.mkdir()
    for src in sample_images()[:4]:
        shutil.copyfile(src, collection / src.name)
    data = fresh_data_dir(tmp_path, models_dir)
    build(collection, data, layouts="grid")  # creates the model's cache file
    cache_file = next((data / "cache").glob("embeddings-*.sqlite"))
    model_key = cache_file.stem.removeprefix("embeddings-")
    for path in (data / "cache").iterdir():
        path.unlink()  # nothing embedded any more...
    marker = np.zeros(open_snapshot(data).vectors.shape[1], np.float32)
    shutil.rmtree(data / "snapshots")  # ...nor carried over from a snapshot...
    (data / "CURRENT").unlink()

    # ...except one image, in a shard a crashed run wrote, with a marker vector.
    src = sorted(collection.iterdir())[0]
    marker[0] = 1.0
    with Image.open(src) as im:
        thumb = make_thumbnail(im.convert("RGB"))
    shard = data / "shards" / model_key / "crashed-run" / "0.npz"
    tops = (np.arange(10, dtype=np.uint16) + 100, np.full(10, 0.1, np.float16))
    write_shard(shard, [CachedItem(sha256_file(src), 7, 9, "PNG", marker, thumb, tops)])
    (shard.parent / ".tmp-1.npz").write_bytes(b"cut short")

    report = build(collection, data, layouts="grid", engine="ray")
    assert report.indexed == 4 and not report.skipped
    snap = open_snapshot(data)
    row = next(r for r in snap.rows if r.path == src.name)
    assert (row.width, row.height) == (7, 9)  # taken from the shard, not decoded again
    np.testing.assert_array_equal(snap.vectors[row.id], marker)
    assert snap.concepts is not None  # and its top concepts, from the shard too
    np.testing.assert_array_equal(snap.concepts.classes[row.id], tops[0])
    assert not [p for p in (data / "shards").rglob("*") if p.is_file()]
    assert not shard.parent.exists()


def test_shard_round_trip_and_torn_shards(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    items = [
        CachedItem(f"{i:064x}", 10 + i, 20 + i, "JPEG", rng.normal(size=8).astype(np.float32), t)
        for i, t in enumerate([b"\xff\xd8abc", b"", b"\xff\xd8" * 50])
    ]
    path = tmp_path / "run" / "a.npz"
    write_shard(path, items)
    back = read_shard(path)
    assert back is not None and len(back) == 3
    for got, want in zip(back, items, strict=True):
        assert (got.sha256, got.width, got.height, got.format, got.thumbnail) == (
            want.sha256,
            want.width,
            want.height,
            want.format,
            want.thumbnail,
        )
        np.testing.assert_array_equal(got.vector, want.vector)
    assert not list(path.parent.glob(".tmp-*"))
    path.write_bytes(path.read_bytes()[:100])
    assert read_shard(path) is None


def test_pool_plan() -> None:
    # CPUs: one single-threaded actor per core, decoding its own batches.
    two = plan_pool([2.0], gpus=0)
    assert (two.actors, two.actor_cpus, two.threads, two.device) == (2, 1.0, 1, "cpu")
    assert two.decode_in_actor
    assert plan_pool([16.0, 8.0, 8.0], gpus=0).actors == 32
    # GPUs: one actor per GPU, fed by decode tasks on the CPUs.
    gpu = plan_pool([8.0, 8.0], gpus=4)
    assert (gpu.actors, gpu.actor_gpus, gpu.device, gpu.decode_in_actor) == (4, 1.0, "cuda", False)
    assert gpu.decode_cpus == gpu.actor_cpus == 1.0
    small = plan_pool([1.0], gpus=1)
    assert small.actor_cpus + small.decode_cpus <= 1.0  # both fit on a one-core node
    assert plan_pool([8.0], gpus=2, device="cpu").device == "cpu"
    with pytest.raises(ValueError, match="no GPU"):
        plan_pool([4.0], gpus=0, device="cuda")
    with pytest.raises(ValueError, match="no node"):
        plan_pool([], gpus=0)


def test_engine_choice_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="engine"):
        build(tmp_path / "empty", tmp_path / "data", engine="spark")
    with pytest.raises(ValueError, match="address needs ray"):
        build(tmp_path / "empty", tmp_path / "data", ray_address="auto")
    assert main(["index", str(tmp_path / "empty"), "--address", "auto"]) == 2
    assert "--address needs --engine ray" in capsys.readouterr().err
