"""What a build takes from the previous snapshot, read only where it is needed.

An incremental build (indexer.finish) keeps unchanged images as the previous
snapshot has them: their vectors (copied by runs from its memory map), their
thumbnails (read lazily, or hard-linked by write_snapshot), their k-NN lists and
graph edges, and the atlas sheets that hold no change. The pure arithmetic of
updating (ids, carried rows, k-NN, maps) is indexer.update's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import overload

import numpy as np

from .atlas import KeepSheet
from .cache import CachedItem
from .snapshot import Snapshot, SnapshotError, current_id, open_snapshot, read_knn
from .update import previous_to_new


def previous_snapshot(data_dir: Path, folder: Path, log: Callable[[str], None]) -> Snapshot | None:
    """The live snapshot, if it indexes `folder` and opens cleanly."""
    if current_id(data_dir) is None:
        return None
    try:
        prev = open_snapshot(data_dir)
    except (SnapshotError, OSError) as exc:
        log(f"previous snapshot unusable ({exc}): ids and maps start afresh")
        return None
    if prev.manifest.collection.root != str(folder.resolve()):
        log("previous snapshot indexes another folder: ids and maps start afresh")
        return None
    return prev


def previous_knn(prev: Snapshot, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The previous snapshot's k-NN lists (rows of that snapshot), if it has k of them."""
    if prev.manifest.knn is None or prev.manifest.knn.k != k:
        return None
    return read_knn(prev)


def atlas_keeper(prev: Snapshot | None, changed: np.ndarray) -> KeepSheet | None:
    """Hands back the previous snapshot's sheets whose id ranges hold no change."""
    if prev is None or not prev.atlas:
        return None
    before = {
        sh["file"]: (sh["first"], sh["count"], sh["height"])
        for size in prev.atlas.get("sizes", [])
        for sh in size["sheets"]
    }
    changed = np.sort(changed)

    def keep(name: str, first: int, count: int, height: int) -> bytes | None:
        if before.get(name) != (first, count, height):
            return None
        at = int(np.searchsorted(changed, first))
        if at < len(changed) and changed[at] < first + count:
            return None
        return (prev.path / name).read_bytes()

    return keep


def carried_edges(
    prev: Snapshot, carried: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The previous graph's edges between images still here, in this build's rows:
    its joining links let an update skip the search that found them."""
    if prev.graph is None:
        return None
    prev_to_new = previous_to_new(carried, prev.count)
    edges = prev.graph.tocoo()
    a, b = prev_to_new[edges.row], prev_to_new[edges.col]
    ok = (a >= 0) & (b >= 0)
    return a[ok], b[ok], edges.data[ok]


def copy_rows(dst: np.ndarray, src: np.ndarray, src_row: np.ndarray) -> None:
    """dst[r] = src[src_row[r]] wherever src_row[r] >= 0, by runs of consecutive
    rows: slices of a memory-mapped `src` copy at memory speed, where a fancy
    index over 100k rows costs seconds."""
    rows = np.flatnonzero(src_row >= 0)
    if not len(rows):
        return
    cut = np.flatnonzero((np.diff(rows) != 1) | (np.diff(src_row[rows]) != 1)) + 1
    for run in np.split(rows, cut):
        first, last = int(run[0]), int(run[-1]) + 1
        start = int(src_row[first])
        dst[first:last] = src[start : start + last - first]


class Thumbnails(Sequence[bytes]):
    """Each row's thumbnail, read when asked: the previous snapshot's file for an
    unchanged image, else the cache's. An update reads only the thumbnails it has
    to (new images, and the images of atlas sheets that changed)."""

    def __init__(
        self,
        ids: np.ndarray,
        shas: list[str],
        carried: np.ndarray,
        prev: Snapshot | None,
        fresh: dict[str, CachedItem],
        fetch: Callable[[list[str]], dict[str, CachedItem]],
    ) -> None:
        self.ids, self.shas, self.carried = ids, shas, carried
        self.prev, self.fresh, self.fetch = prev, fresh, fetch

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, row: int) -> bytes: ...
    @overload
    def __getitem__(self, row: slice) -> list[bytes]: ...
    def __getitem__(self, row: int | slice) -> bytes | list[bytes]:
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        sha = self.shas[row]
        if sha in self.fresh:
            return self.fresh[sha].thumbnail
        if self.prev is not None and self.carried[row] >= 0:
            try:
                return self.prev.thumbnail_path(int(self.ids[row])).read_bytes()
            except OSError:
                pass  # gone from the old snapshot: the cache has it
        return self.fetch([sha])[sha].thumbnail
