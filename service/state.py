"""The live snapshot and the ability to swap it while requests are in flight."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from indexer.embed import Embedder
from indexer.snapshot import Snapshot, SnapshotError, current_id, open_snapshot

log = logging.getLogger("pixscape.service")


@dataclass(frozen=True)
class Live:
    """One opened snapshot plus its query embedder: immutable, swapped whole."""

    snapshot: Snapshot
    embedder: Embedder


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
        wanted = current_id(self.data_dir)
        if wanted is None or (self.live is not None and self.live.snapshot.id == wanted):
            return False
        try:
            live = self.load(wanted)
        except (SnapshotError, OSError, RuntimeError) as exc:
            message = f"refusing snapshot {wanted}: {exc}"
            if message != self.error:
                log.error("%s; keeping %s", message, self.live.snapshot.id if self.live else "none")
            self.error = message
            return False
        self.live, self.error = live, None
        log.info("serving snapshot %s (%d images)", wanted, live.snapshot.count)
        return True
