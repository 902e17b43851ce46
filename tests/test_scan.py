import hashlib
import os
from pathlib import Path

import pytest

from indexer.scan import scan_folder

# The scan refuses a file by its first bytes before hashing it: files that
# stand in for images start with their format's signature.
SIGNATURES = {
    ".jpg": b"\xff\xd8\xff\xe0",
    ".jpeg": b"\xff\xd8\xff\xe0",
    ".png": b"\x89PNG\r\n\x1a\n",
    ".webp": b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    ".gif": b"GIF89a",
    ".bmp": b"BM",
    ".tif": b"II*\x00",
    ".tiff": b"II*\x00",
}


def _write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(SIGNATURES.get(path.suffix.lower(), b"") + data)
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
    assert one.sha256 == hashlib.sha256(SIGNATURES[".jpg"] + b"a/one.JPG").hexdigest()
    assert one.size == len(SIGNATURES[".jpg"] + b"a/one.JPG")
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
        _write(tmp_path / name, name.encode() * 10)
    first, _ = scan_folder(tmp_path)
    # Pretend the earlier scan saw "a.png" with another hash: a stat match reuses it.
    known = {e.rel_path: (e.size, e.mtime_ns, e.inode, "f" * 64) for e in first}
    _write(tmp_path / "b.png", b"changed content")
    again, _ = scan_folder(tmp_path, known)
    by = {e.rel_path: e.sha256 for e in again}
    assert by["a.png"] == "f" * 64  # unchanged size, mtime, inode: not read again
    assert by["b.png"] == hashlib.sha256(SIGNATURES[".png"] + b"changed content").hexdigest()


def _bytes_read() -> int:
    """Bytes this process has read through read() calls, per the kernel."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.mark.parametrize("limit", [None, 4 << 30])
def test_a_huge_non_image_is_refused_before_it_is_hashed(tmp_path: Path, limit: int | None) -> None:
    """A 3 GB sparse file named .jpg: refused by its size (default limit) or, under
    a higher limit, by its first bytes; either way without reading it."""
    _write(tmp_path / "ok.png")
    with open(tmp_path / "huge.jpg", "wb") as fh:
        fh.truncate(3 << 30)  # sparse: costs no disk
    before = _bytes_read()
    if limit is None:
        entries, skipped = scan_folder(tmp_path)
    else:
        entries, skipped = scan_folder(tmp_path, max_file_bytes=limit)
    read = _bytes_read() - before
    assert [e.rel_path for e in entries] == ["ok.png"]
    assert [s.path for s in skipped] == ["huge.jpg"]
    expected = "too large" if limit is None else "not a recognised image format"
    assert expected in skipped[0].reason
    assert read < 1 << 20, f"{read:,} bytes read to refuse it"


def test_empty_and_mislabelled_files_are_refused_by_content(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "page.png").write_bytes(b"<html>not a picture</html>")
    (tmp_path / "real.gif").write_bytes(SIGNATURES[".png"] + b"a PNG named .gif")
    entries, skipped = scan_folder(tmp_path)
    assert [e.rel_path for e in entries] == ["real.gif"]  # the bytes decide, not the name
    reasons = {s.path: s.reason for s in skipped}
    assert "empty" in reasons["empty.jpg"]
    assert "not a recognised image format" in reasons["page.png"]
