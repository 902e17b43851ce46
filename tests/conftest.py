"""Shared fixtures: one real model export and one real snapshot per session.

Tests use the real EfficientNet-Lite0 weights, real FAISS and real files: a
subset of the sample collection in images/ and photographs cut from the openly
licensed sample photos that scikit-image ships inside its wheel (tests/PHOTOS.md
names each file and its licence). Nothing is downloaded and nothing outside the
checkout and its virtual environment is read.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from indexer.build import BuildReport, build
from indexer.models import DEFAULT_MODEL, ensure_onnx, get_spec
from indexer.snapshot import Snapshot, open_snapshot

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"
PER_LABEL = 4
BUILT_PER_LABEL = 10  # the session snapshot: 200 stamps and 120 photos
N_PHOTOS = 120

# scikit-image's bundled photographs (in its wheel, never fetched), each with a
# stated licence (tests/PHOTOS.md). Only photographs: drawings, stereo pairs and
# images without a stated licence are left out, and so are the self-similar ones
# (brick, grass, gravel, coins, the Hubble deep field, the round retina), whose crops look alike to
# the network, so that an edited copy could not tell its original from a sibling.
SOURCE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "ihc.png",
    "camera.png",
    "cell.png",
    "clock_motion.png",
    "text.png",
)
# Five crops of each source (whole, four corners), upright and turned a quarter
# either way (as a phone stores a sideways photo): 9 x 5 x 3 = 135 distinct
# photos, enough for layouts fitted on a 100-image sample.
VIEWS = (
    (0.0, 0.0, 1.0, 1.0),
    (0.0, 0.0, 0.6, 0.6),
    (0.4, 0.0, 1.0, 0.6),
    (0.0, 0.4, 0.6, 1.0),
    (0.4, 0.4, 1.0, 1.0),
)
TURNS = (0, 90, 270)
PHOTO_SIDE = 480  # longest side of a generated photo: real-photo sizes, fast to decode
PHOTO_SET_VERSION = 4  # bump when the generation below changes


def skimage_data() -> Path:
    """The folder of sample images inside the installed scikit-image wheel."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scikit-image (dev extra) is not installed: its photos are test data")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    missing = [name for name in SOURCE_PHOTOS if not (data / name).is_file()]
    if missing:
        raise RuntimeError(f"scikit-image's wheel lacks {missing} (looked in {data})")
    return data


def _write_photos(dest: Path) -> None:
    data = skimage_data()
    for s, name in enumerate(SOURCE_PHOTOS):
        with Image.open(data / name) as src:
            im = src.convert("RGB")
        w, h = im.size
        stem = name.rsplit(".", 1)[0]
        for v, (x0, y0, x1, y1) in enumerate(VIEWS):
            view = im.crop((round(x0 * w), round(y0 * h), round(x1 * w), round(y1 * h)))
            view.thumbnail((PHOTO_SIDE, PHOTO_SIDE), Image.Resampling.LANCZOS)
            for t, angle in enumerate(TURNS):
                turned = view.rotate(angle, expand=True) if angle else view
                # Views first: the first n photos of the sorted set come from n sources.
                name_ = f"{t}{v}{s:02d}-{stem}.jpg"
                turned.save(dest / name_, format="JPEG", quality=90)


def photo_folder() -> Path:
    """The generated photographs, made once and kept in .pytest_cache.

    Made in a private folder and renamed into place, so that concurrent test
    runs never see a half-written set (the content is deterministic: whichever
    run wins, the files are the same).
    """
    cache = ROOT / ".pytest_cache"
    folder = cache / f"photos-v{PHOTO_SET_VERSION}"
    if folder.is_dir():
        return folder
    cache.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".photos-", dir=cache))
    try:
        _write_photos(work)
        os.rename(work, folder)
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def sample_images(per_label: int = PER_LABEL) -> list[Path]:
    """A few images from every label folder of the sample collection."""
    picked: list[Path] = []
    for folder in sorted(p for p in IMAGES.iterdir() if p.is_dir()):
        picked.extend(sorted(folder.glob("*.png"))[:per_label])
    return picked


def sample_photos(n: int = N_PHOTOS) -> list[Path]:
    """The first `n` of the 120 generated photographs (JPEG, real content)."""
    photos = sorted(photo_folder().iterdir())
    if n > len(photos):
        raise ValueError(f"only {len(photos)} test photos, {n} asked for")
    return photos[:n]


def make_collection(dest: Path, photos: int = N_PHOTOS, per_label: int = PER_LABEL) -> Path:
    """Copy the test subset into `dest` (label folders kept; photos under photos/)."""
    for src in sample_images(per_label):
        target = dest / src.parent.name / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    for src in sample_photos(photos):
        target = dest / "photos" / src.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return dest


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ONNX export, done once per session and copied into each data folder."""
    path = tmp_path_factory.mktemp("models")
    ensure_onnx(get_spec(DEFAULT_MODEL), path)
    return path


def fresh_data_dir(parent: Path, models_dir: Path) -> Path:
    data = parent / "data"
    shutil.copytree(models_dir, data / "models")
    return data


@dataclass(frozen=True)
class Built:
    collection: Path
    data_dir: Path
    report: BuildReport
    snapshot: Snapshot


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Built:
    base = tmp_path_factory.mktemp("built")
    # More stamps per label than the default: a cluster of stamps then has one of
    # their labels as its plurality label, not the photos' folder.
    collection = make_collection(base / "collection", per_label=BUILT_PER_LABEL)
    data = fresh_data_dir(base, models_dir)
    report = build(collection, data)
    return Built(collection, data, report, open_snapshot(data))
