"""The live snapshot and the ability to swap it while requests are in flight."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from indexer.embed import Embedder
from indexer.snapshot import CatalogRow, Snapshot, SnapshotError, current_id, open_snapshot

from .errors import UnknownImage

log = logging.getLogger("pixscape.service")
# An absolute path left in a message: starts a word with "/" (not "a/b").
_ABSOLUTE = re.compile(r"(?<![\w.~-])/[^\s'\"()]+")


def without_paths(text: str, data_dir: Path) -> str:
    """`text` with no absolute path in it: files of the data folder are named
    relative to it (snapshots/<id>/vectors.npy), any other path as <path>."""
    for root in {os.path.realpath(data_dir), str(data_dir.absolute())}:
        text = text.replace(root.rstrip("/") + "/", "")
    return _ABSOLUTE.sub("<path>", text)


@dataclass(frozen=True)
class Live:
    """One opened snapshot plus its query embedder: immutable, swapped whole."""

    snapshot: Snapshot
    embedder: Embedder

    def row_index(self, image_id: int) -> int:
        """The snapshot row of catalog id `image_id`; UnknownImage when no image has it."""
        found = self.snapshot.row_of(image_id)
        if found is None:
            raise UnknownImage(image_id)
        return found

    def row(self, image_id: int) -> CatalogRow:
        return self.snapshot.rows[self.row_index(image_id)]


class SnapshotHolder:
    """Holds the current `Live`; a request takes one reference and keeps using it,
    so a swap never changes the snapshot under a request in flight."""

    def __init__(self, data_dir: Path, inference_threads: int) -> None:
        self.data_dir = data_dir
        self.inference_threads = inference_threads
        self.live: Live | None = None
        self.error: str | None = None

    def load(self, snapshot_id: str) -> Live:
        snapshot = open_snapshot(self.data_dir, snapshot_id)
        embedder = Embedder(snapshot.model_path, threads=self.inference_threads)
        return Live(snapshot, embedder)

    def refresh(self) -> bool:
        """Open the snapshot CURRENT names if it is not the live one. True if swapped.

        A snapshot that fails to open is refused with a log line and the previous
        one keeps serving.
        """
        try:
            wanted = current_id(self.data_dir)
        except SnapshotError as exc:
            # What CURRENT holds (perhaps an absolute path) stays in the log.
            return self._refuse(str(exc), "CURRENT does not name a snapshot folder")
        if wanted is None:
            return False
        if self.live is not None and self.live.snapshot.id == wanted:
            self.error = None  # CURRENT names the live one again: nothing is refused
            return False
        try:
            live = self.load(wanted)
        # Whatever fails while opening a snapshot's files (a bad .npy is a
        # ValueError, a bad catalog an sqlite3 error) means: refuse this one.
        except Exception as exc:
            reason = without_paths(str(exc), self.data_dir)
            return self._refuse(
                f"refusing snapshot {wanted}: {exc}", f"snapshot {wanted} is broken ({reason})"
            )
        self.live, self.error = live, None
        log.info("serving snapshot %s (%d images)", wanted, live.snapshot.count)
        return True

    def _refuse(self, detail: str, public: str) -> bool:
        """Log why a snapshot was refused; keep for clients a reason without paths.

        `error` reaches anyone who asks (the 503 body): the details name files
        under the data folder, so they go to the server log only.
        """
        error = f"{public}; the server log has more"
        if error != self.error:
            log.error("%s; keeping %s", detail, self.live.snapshot.id if self.live else "none")
        self.error = error
        return False
