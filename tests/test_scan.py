import hashlib
import os
from pathlib import Path

import pytest

from indexer.scan import scan_folder


def _write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_finds_images_case_insensitively_and_labels_by_folder(tmp_path: Path) -> None:
    for name in [
        "a/one.JPG",
        "a/two.jpeg",
        "b/three.PNG",
        "b/c/four.webp",
        "five.GIF",
        "six.bmp",
        "seven.TIFF",
        "eight.tif",
    ]:
        _write(tmp_path / name, name.encode())
    _write(tmp_path / "notes.txt")
    _write(tmp_path / "a" / "movie.mp4")
    entries, skipped = scan_folder(tmp_path)
    assert [e.rel_path for e in entries] == sorted(
        [
            "a/one.JPG",
            "a/two.jpeg",
            "b/three.PNG",
            "b/c/four.webp",
            "five.GIF",
            "six.bmp",
            "seven.TIFF",
            "eight.tif",
        ]
    )
    labels = {e.rel_path: e.label for e in entries}
    assert labels["a/one.JPG"] == "a" and labels["b/c/four.webp"] == "c"
    assert labels["five.GIF"] is None
    one = next(e for e in entries if e.rel_path == "a/one.JPG")
    assert one.sha256 == hashlib.sha256(b"a/one.JPG").hexdigest()
    assert one.size == len(b"a/one.JPG")
    assert skipped == []


def test_skips_hidden_files_and_folders(tmp_path: Path) -> None:
    _write(tmp_path / ".hidden.jpg")
    _write(tmp_path / ".cache" / "x.jpg")
    _write(tmp_path / "ok" / "y.jpg")
    entries, _ = scan_folder(tmp_path)
    assert [e.rel_path for e in entries] == ["ok/y.jpg"]


def test_symlinks_leaving_the_folder_are_skipped(tmp_path: Path) -> None:
    outside = _write(tmp_path / "outside" / "secret.jpg")
    root = tmp_path / "collection"
    _write(root / "inside.jpg")
    os.symlink(outside, root / "escape.jpg")
    os.symlink(tmp_path / "outside", root / "linkdir")  # never followed
    os.symlink(root / "inside.jpg", root / "alias.jpg")  # stays inside: fine
    entries, skipped = scan_folder(root)
    assert {e.rel_path for e in entries} == {"inside.jpg", "alias.jpg"}
    assert [(s.path, "leaves" in s.reason) for s in skipped] == [("escape.jpg", True)]


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="not found"):
        scan_folder(tmp_path / "nope")


def test_a_rescan_hashes_only_touched_files(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(name.encode() * 10)
    first, _ = scan_folder(tmp_path)
    # Pretend the earlier scan saw "a.png" with another hash: a stat match reuses it.
    known = {e.rel_path: (e.size, e.mtime_ns, e.inode, "f" * 64) for e in first}
    (tmp_path / "b.png").write_bytes(b"changed content")
    again, _ = scan_folder(tmp_path, known)
    by = {e.rel_path: e.sha256 for e in again}
    assert by["a.png"] == "f" * 64  # unchanged size, mtime, inode: not read again
    assert by["b.png"] == hashlib.sha256(b"changed content").hexdigest()
