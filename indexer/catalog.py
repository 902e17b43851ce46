"""catalog.sqlite: one row per image (id, path, content hash, size, pixels, format,
label), in id order. Written once per snapshot (the caller fsyncs it), read whole
at open."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .scan import path_bytes, path_from_bytes


@dataclass(frozen=True)
class CatalogRow:
    id: int
    # Relative to the collection root, POSIX, as indexer.scan gives it: the exact
    # bytes through os.fsencode; shown to people with indexer.scan.readable.
    path: str
    sha256: str
    size: int
    width: int
    height: int
    format: str
    label: str | None


def write_catalog(path: Path, rows: Sequence[CatalogRow]) -> None:
    db = sqlite3.connect(path)
    try:
        # path is the file name's bytes (BLOB): it need not be UTF-8. Catalogs
        # written before held TEXT; read_catalog takes either.
        db.execute(
            "CREATE TABLE images (id INTEGER PRIMARY KEY, path BLOB NOT NULL UNIQUE,"
            " sha256 TEXT NOT NULL, size INTEGER NOT NULL, width INTEGER NOT NULL,"
            " height INTEGER NOT NULL, format TEXT NOT NULL, label TEXT)"
        )
        db.executemany(
            "INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (r.id, path_bytes(r.path), r.sha256, r.size, r.width, r.height, r.format, r.label)
                for r in rows
            ],
        )
        db.commit()
    finally:
        db.close()


def read_catalog(path: Path) -> tuple[CatalogRow, ...]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cur = db.execute(
            "SELECT id, path, sha256, size, width, height, format, label FROM images ORDER BY id"
        )
        return tuple(
            CatalogRow(image_id, path_from_bytes(rel), *rest) for image_id, rel, *rest in cur
        )
    finally:
        db.close()
