"""A selection's export: CSV or JSON rows (id, path, label, score), or a zip of
the original files streamed as it is read, without a temporary copy."""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from indexer.catalog import CatalogRow
from indexer.scan import readable

from .errors import BadSelection
from .files import original_path
from .state import Live

_CHUNK = 1 << 20  # bytes read from a file at a time


@dataclass(frozen=True)
class Entry:
    row: CatalogRow
    score: float | None


def _record(entry: Entry) -> dict[str, object]:
    row = entry.row
    return {"id": row.id, "path": readable(row.path), "label": row.label, "score": entry.score}


def as_csv(entries: Sequence[Entry]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["id", "path", "label", "score"], lineterminator="\n")
    writer.writeheader()
    for entry in entries:
        writer.writerow({k: "" if v is None else v for k, v in _record(entry).items()})
    return out.getvalue().encode()


def as_json(snapshot_id: str, entries: Sequence[Entry]) -> bytes:
    body = {"snapshot": snapshot_id, "images": [_record(e) for e in entries]}
    return json.dumps(body, ensure_ascii=False, indent=1).encode()


class _Sink(io.RawIOBase):
    """A write-only, unseekable stream that hands on what was written: zipfile
    then writes each entry's sizes after its data (a data descriptor)."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


@dataclass(frozen=True)
class ZipPlan:
    files: list[tuple[str, str, int]]  # (name in the zip, file on disk, bytes to read)
    missing: list[str]  # paths no longer on disk
    total: int


def _zip_name(path: str, taken: set[str]) -> str:
    name = readable(path).lstrip("/") or "image"
    stem, dot, ext = name.rpartition(".")
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem} ({n}).{ext}" if dot else f"{name} ({n})"
    taken.add(candidate)
    return candidate


def plan_zip(live: Live, entries: Sequence[Entry], max_bytes: int) -> ZipPlan:
    """What the zip will hold, its size checked before a byte is sent: the files
    as they are on disk now (BadSelection, too large, past `max_bytes`)."""
    taken: set[str] = set()
    files, missing, total = [], [], 0
    for entry in entries:
        path = original_path(live.snapshot, entry.row)
        size = os.stat(path).st_size if path is not None else -1
        if path is None:
            missing.append(readable(entry.row.path))
            continue
        total += size
        files.append((_zip_name(entry.row.path, taken), path, size))
    if total > max_bytes:
        raise BadSelection(
            f"the selection's files are {total:,} bytes, over the {max_bytes:,} byte export"
            " limit: export fewer images, or the CSV and fetch the files by id",
            too_large=True,
        )
    return ZipPlan(files, missing, total)


def stream_zip(plan: ZipPlan) -> Iterator[bytes]:
    """The zip's bytes as they are made: each file stored (images are compressed
    already) and read a MiB at a time, at most the size planned (a file that grew
    since is cut there); MISSING.txt lists files gone before or while streaming."""
    sink = _Sink()
    missing = list(plan.missing)
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, path, size in plan.files:
            try:
                src = open(path, "rb")  # noqa: SIM115 (closed below, between yields)
            except OSError:
                missing.append(name)
                continue
            with src, zf.open(name, "w", force_zip64=size >= 1 << 31) as dst:
                left = size
                while left > 0 and (chunk := src.read(min(_CHUNK, left))):
                    dst.write(chunk)
                    left -= len(chunk)
                    yield sink.take()
            yield sink.take()
        if missing:
            zf.writestr("MISSING.txt", "\n".join(["Not on disk any more:", *missing, ""]))
    yield sink.take()
