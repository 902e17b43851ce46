"""Find image files under a folder and hash their content."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
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
    mtime_ns: int = 0
    inode: int = 0


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


# What a previous scan learnt about a file: (size, mtime_ns, inode, sha256).
Known = Mapping[str, tuple[int, int, int, str]]


def _files(root: str) -> Iterator[os.DirEntry[str]]:
    """Every non-hidden entry below `root` that is not a real directory.

    Symlinked folders are not descended into (they could loop or leave the
    collection), so everything yielded lies inside `root` unless it is itself a
    symlink. Plain strings and scandir: at 100k files pathlib costs more than hashing.
    """
    stack = [root]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                entries = [e for e in it if not e.name.startswith(".")]
        except OSError:
            continue  # a folder vanished or is unreadable: like os.walk, go on
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            else:
                yield entry


def scan_folder(root: Path, known: Known | None = None) -> tuple[list[FileEntry], list[Skipped]]:
    """Every image file under `root`, sorted by relative path.

    Hidden files and folders are skipped, and so is anything whose real path
    leaves `root` (a symlink pointing outside must not smuggle files in).
    `known`: hashes from an earlier scan, reused where size, mtime and inode are
    unchanged, so a rescan of a large collection reads only new or touched files.
    """
    root_real = os.path.realpath(root)
    if not os.path.isdir(root_real):
        raise NotADirectoryError(f"collection folder not found: {root}")
    known = known or {}
    entries: list[FileEntry] = []
    skipped: list[Skipped] = []
    cut = len(root_real) + 1
    for item in _files(root_real):
        if os.path.splitext(item.name)[1].lower() not in IMAGE_EXTENSIONS:
            continue
        rel = item.path[cut:].replace(os.sep, "/")
        real = item.path
        if item.is_symlink():
            real = os.path.realpath(item.path)
            if os.path.commonpath([root_real, real]) != root_real:
                skipped.append(Skipped(rel, "symlink leaves the collection folder"))
                continue
        try:
            st = os.stat(real)
            if not stat.S_ISREG(st.st_mode):
                skipped.append(Skipped(rel, "not a regular file"))
                continue
            seen = known.get(rel)
            if seen is not None and seen[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
                digest = seen[3]
            else:
                digest = sha256_file(Path(real))
        except OSError as exc:
            skipped.append(Skipped(rel, f"unreadable: {exc.strerror or exc}"))
            continue
        entries.append(
            FileEntry(
                rel, Path(real), st.st_size, digest, _label_for(rel), st.st_mtime_ns, st.st_ino
            )
        )
    entries.sort(key=lambda e: e.rel_path)
    skipped.sort(key=lambda s: s.path)
    return entries, skipped
