"""Shared fixtures: one real model export and one real snapshot per session.

Tests use the real EfficientNet-Lite0 weights, real FAISS and real files: a
subset of the sample collection in images/ and, where the checkout has
../shared beside it, of the 600 photos in ../shared/data/photos.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from indexer.build import BuildReport, build
from indexer.models import DEFAULT_MODEL, ensure_onnx, get_spec
from indexer.snapshot import Snapshot, open_snapshot

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "images"
PHOTOS = ROOT.parent / "shared" / "data" / "photos"
PER_LABEL = 4
N_PHOTOS = 120

needs_photos = pytest.mark.skipif(
    not PHOTOS.is_dir(), reason=f"real photos not found at {PHOTOS} (../shared is absent)"
)


def sample_images() -> list[Path]:
    """A few images from every label folder of the sample collection."""
    picked: list[Path] = []
    for folder in sorted(p for p in IMAGES.iterdir() if p.is_dir()):
        picked.extend(sorted(folder.glob("*.png"))[:PER_LABEL])
    return picked


def sample_photos(n: int = N_PHOTOS) -> list[Path]:
    if not PHOTOS.is_dir():
        return []
    return sorted(PHOTOS.iterdir())[:n]


def make_collection(dest: Path, photos: int = N_PHOTOS) -> Path:
    """Copy the test subset into `dest` (label folders kept; photos under photos/)."""
    for src in sample_images():
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
    collection = make_collection(base / "collection")
    data = fresh_data_dir(base, models_dir)
    report = build(collection, data)
    return Built(collection, data, report, open_snapshot(data))
