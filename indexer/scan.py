"""Find image files under a folder and hash their content."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileEntry:
    rel_path: str  # POSIX-style, relative to the collection root
    abs_path: Path
    size: int
    sha256: str
    label: str | None  # the folder the file sits in; None at the root


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _label_for(rel: str) -> str | None:
    parts = rel.split("/")
    return parts[-2] if len(parts) > 1 else None


def scan_folder(root: Path) -> tuple[list[FileEntry], list[Skipped]]:
    """Every image file under `root`, sorted by relative path.

    Hidden files and folders are skipped, and so is anything whose real path
    leaves `root` (a symlink pointing outside must not smuggle files in).
    """
    root_real = Path(os.path.realpath(root))
    if not root_real.is_dir():
        raise NotADirectoryError(f"collection folder not found: {root}")
    entries: list[FileEntry] = []
    skipped: list[Skipped] = []
    # followlinks=False: a symlinked folder could loop or leave the collection.
    for dirpath, dirnames, filenames in os.walk(root_real, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root_real).as_posix()
            real = Path(os.path.realpath(path))
            if not real.is_relative_to(root_real):
                skipped.append(Skipped(rel, "symlink leaves the collection folder"))
                continue
            if not real.is_file():
                skipped.append(Skipped(rel, "not a regular file"))
                continue
            try:
                size = real.stat().st_size
                digest = sha256_file(real)
            except OSError as exc:
                skipped.append(Skipped(rel, f"unreadable: {exc.strerror or exc}"))
                continue
            entries.append(FileEntry(rel, real, size, digest, _label_for(rel)))
    entries.sort(key=lambda e: e.rel_path)
    return entries, skipped
