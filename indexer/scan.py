"""Find image files under a folder and hash their content.

File names are whatever bytes the file system holds: not necessarily UTF-8 (old
cameras, Windows shares and zip files write Latin-1 or worse), with newlines,
tabs or spaces at either end. A path is carried as the str os.scandir gives
(undecodable bytes as surrogate escapes, PEP 383), which os.fsencode turns back
into the exact bytes: that is how the caches and the catalog store it. People
see `readable(path)`, never the raw str (it cannot be encoded as UTF-8 or JSON).

Cheap refusals come first: a file over the size limit, an empty one, or one
whose first bytes are no format decode accepts is skipped before it is hashed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .decode import ALLOWED_FORMATS
from .digest import sha256_file

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
# No image under the default pixel limit (80 Mpx) needs more: even a 16-bit RGBA
# TIFF of that size is 640 MB. A bigger file is refused before it is read.
DEFAULT_MAX_FILE_BYTES = 1 << 30
_SNIFF_BYTES = 16  # what Pillow itself reads to tell formats apart

# Control characters would break a report line or fool a terminal: escaped.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
_CONTROL |= {c: f"\\u{c:04x}" for c in range(0x80, 0xA0)}
_CONTROL |= {ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r"}


def path_bytes(path: str) -> bytes:
    """The exact bytes of a path as scanned (what the caches and the catalog store)."""
    return os.fsencode(path)


def path_from_bytes(raw: bytes | str) -> str:
    """A stored path back as scan_folder gave it (str: stored before paths were bytes)."""
    return raw if isinstance(raw, str) else os.fsdecode(raw)


def readable(path: str) -> str:
    """A path as people read it (API, reports, logs): UTF-8, each byte that is not
    UTF-8 shown as \\xNN, control characters escaped (\\n, \\t, \\x1b).

    Always encodable, but not an identity (a name may hold a real backslash):
    the catalog keeps the bytes and clients go by catalog id.
    """
    try:
        raw = os.fsencode(path)
    except UnicodeError:  # a str that never came from the file system
        raw = path.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace").translate(_CONTROL)


def sniff_format(head: bytes) -> str | None:
    """The accepted format that a file's first bytes announce, or None.

    Pillow's own signature checks for exactly the formats decode accepts, so
    this refuses nothing that decode would take (MPO opens as JPEG).
    """
    Image.init()
    for fmt in sorted(ALLOWED_FORMATS):
        opener = Image.OPEN.get(fmt)
        if opener is None:
            continue
        accept = opener[1]
        if accept is None:
            return fmt  # a format Pillow cannot sniff: decoding will tell
        verdict = accept(head)
        if verdict and not isinstance(verdict, str):  # a str: support not built in
            return fmt
    return None


def refusal(path: str | Path, size: int, max_bytes: int) -> str | None:
    """Why a file is refused before it is hashed (size, then its first bytes), or None."""
    if size > max_bytes:
        return f"file too large: {size:,} bytes, over the {max_bytes:,} byte limit"
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    if sniff_format(head) is None:
        accepted = ", ".join(sorted(ALLOWED_FORMATS - {"MPO"}))
        return f"not a recognised image format: the first bytes are none of {accepted}"
    return None


@dataclass(frozen=True)
class FileEntry:
    rel_path: str  # POSIX-style, relative to the collection root; os.fsencode -> exact bytes
    abs_path: Path
    size: int
    sha256: str
    label: str | None  # the folder the file sits in, readable(); None at the root
    mtime_ns: int = 0
    inode: int = 0


@dataclass(frozen=True)
class Skipped:
    path: str  # as FileEntry.rel_path; show it with readable()
    reason: str


def _label_for(rel: str) -> str | None:
    parts = rel.split("/")
    return readable(parts[-2]) if len(parts) > 1 else None


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


def scan_folder(
    root: Path, known: Known | None = None, *, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> tuple[list[FileEntry], list[Skipped]]:
    """Every image file under `root`, sorted by relative path.

    Hidden files and folders are skipped, and so is anything whose real path
    leaves `root` (a symlink pointing outside must not smuggle files in).
    `known`: hashes from an earlier scan, reused where size, mtime and inode are
    unchanged, so a rescan of a large collection reads only new or touched files.
    A file over `max_file_bytes`, empty, or not an image by its first bytes is
    skipped (with the reason) before a byte of it is hashed; so is one that
    cannot be read. No single file stops the scan.
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
        try:
            path_bytes(rel)
        except UnicodeError:  # the file system's names decode losslessly; be sure
            skipped.append(Skipped(rel, "file name cannot be represented"))
            continue
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
            if st.st_size > max_file_bytes:
                skipped.append(Skipped(rel, refusal(real, st.st_size, max_file_bytes) or ""))
                continue
            if seen is not None and seen[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
                digest = seen[3]  # passed the checks below when it was first hashed
            else:
                reason = refusal(real, st.st_size, max_file_bytes)
                if reason is not None:
                    skipped.append(Skipped(rel, reason))
                    continue
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
