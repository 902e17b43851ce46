"""Embedding cache keyed by (content sha256, model fingerprint).

One SQLite file per model under data/cache/. Each batch is committed as it
finishes, so a crash or Ctrl-C loses at most the batch in flight and the next
build resumes. Thumbnails, pixel sizes and the classifier's top concepts
(indexer.concept_scores, NULL for a model without a classifier) ride along: a
rebuild then decodes only new or changed files.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .concept_scores import from_blob, to_blob
from .scan import FileEntry, path_bytes, path_from_bytes

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    sha256 TEXT PRIMARY KEY,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    format TEXT NOT NULL,
    vector BLOB NOT NULL,
    thumbnail BLOB NOT NULL,
    concepts BLOB
)
"""


class CacheRowLost(Exception):
    """A cached embedding turned out unusable (torn, or another model's size)."""


@dataclass(frozen=True)
class CachedItem:
    sha256: str
    width: int
    height: int
    format: str
    vector: np.ndarray
    thumbnail: bytes
    concepts: tuple[np.ndarray, np.ndarray] | None = None  # top classes, probabilities


class EmbeddingCache:
    """`concepts`: whether this model's rows carry top concepts; a row without
    them (or with a torn blob) is unusable like a torn vector."""

    def __init__(self, cache_dir: Path, model_key: str, dim: int, concepts: bool = False) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.path = cache_dir / f"embeddings-{model_key}.sqlite"
        self.dim = dim
        self.concepts = concepts
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(embeddings)")}
        if "concepts" not in columns:  # a cache written before the column
            self._db.execute("ALTER TABLE embeddings ADD COLUMN concepts BLOB")
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> EmbeddingCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def known(self) -> set[str]:
        """The hashes with a usable row (for a model with concepts, rows that have them)."""
        where = " WHERE concepts IS NOT NULL" if self.concepts else ""
        return {row[0] for row in self._db.execute(f"SELECT sha256 FROM embeddings{where}")}

    def put_many(self, items: list[CachedItem]) -> None:
        rows = [
            (
                it.sha256,
                it.width,
                it.height,
                it.format,
                np.ascontiguousarray(it.vector, dtype=np.float32).tobytes(),
                it.thumbnail,
                to_blob(*it.concepts) if it.concepts is not None else None,
            )
            for it in items
        ]
        with self._db:  # one transaction per batch
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings (sha256, width, height, format, vector,"
                " thumbnail, concepts) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def get_many(self, hashes: list[str]) -> dict[str, CachedItem]:
        found: dict[str, CachedItem] = {}
        bad: list[str] = []
        for start in range(0, len(hashes), 500):
            chunk = hashes[start : start + 500]
            marks = ",".join("?" * len(chunk))
            query = (
                "SELECT sha256, width, height, format, vector, thumbnail, concepts"
                f" FROM embeddings WHERE sha256 IN ({marks})"
            )
            for sha, w, h, fmt, vec, thumb, blob in self._db.execute(query, chunk):
                concepts = from_blob(blob) if self.concepts else None
                if len(vec) != 4 * self.dim or (self.concepts and concepts is None):
                    bad.append(sha)  # torn or foreign: dropped, embedded again next run
                    continue
                vector = np.frombuffer(vec, dtype=np.float32)
                found[sha] = CachedItem(sha, w, h, fmt, vector, thumb, concepts)
        if bad:
            with self._db:
                self._db.executemany("DELETE FROM embeddings WHERE sha256 = ?", [(b,) for b in bad])
        return found


class FileHashes:
    """Content hashes of a collection's files by (size, mtime, inode), so that a
    rescan hashes only new or touched files (the way git's index does). One
    SQLite file per data folder; a stale row costs a re-hash, never a wrong one,
    because any change to a file changes its mtime or size.

    Paths (and the root) are stored as their exact bytes (BLOB): a file name
    need not be UTF-8. Version 0 of this file stored them as TEXT, which could
    only ever hold UTF-8 names (anything else failed the whole build); it is
    migrated in place on first open, its hashes kept (SQLite's CAST of TEXT to
    BLOB is the UTF-8 bytes, which is what os.fsencode gives for such a name).
    """

    VERSION = 1

    def __init__(self, cache_dir: Path, root: Path) -> None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.root = path_bytes(str(root.resolve()))
        self._db = sqlite3.connect(cache_dir / "files.sqlite")
        with self._db:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version < self.VERSION:
                self._migrate()

    def _migrate(self) -> None:
        self._db.execute("DROP TABLE IF EXISTS files_v1")  # left by a torn migration
        self._db.execute(
            "CREATE TABLE files_v1 (root BLOB NOT NULL, path BLOB NOT NULL,"
            " size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, inode INTEGER NOT NULL,"
            " sha256 TEXT NOT NULL, PRIMARY KEY (root, path))"
        )
        old = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'files'"
        ).fetchone()
        if old is not None:
            self._db.execute(
                "INSERT OR IGNORE INTO files_v1 SELECT CAST(root AS BLOB), CAST(path AS BLOB),"
                " size, mtime_ns, inode, sha256 FROM files"
            )
            self._db.execute("DROP TABLE files")
        self._db.execute("ALTER TABLE files_v1 RENAME TO files")
        self._db.execute(f"PRAGMA user_version = {self.VERSION}")

    def __enter__(self) -> FileHashes:
        return self

    def __exit__(self, *exc: object) -> None:
        self._db.close()

    def known(self) -> dict[str, tuple[int, int, int, str]]:
        rows = self._db.execute(
            "SELECT path, size, mtime_ns, inode, sha256 FROM files WHERE root = ?", (self.root,)
        )
        return {
            path_from_bytes(path): (size, mtime, inode, sha)
            for path, size, mtime, inode, sha in rows
        }

    def replace(self, entries: Sequence[FileEntry]) -> None:
        """Remember exactly these files (the last scan) for this collection."""
        with self._db:
            self._db.execute("DELETE FROM files WHERE root = ?", (self.root,))
            self._db.executemany(
                "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (self.root, path_bytes(e.rel_path), e.size, e.mtime_ns, e.inode, e.sha256)
                    for e in entries
                ],
            )
