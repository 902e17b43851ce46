"""The live snapshot and the ability to swap it while requests are in flight."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from indexer.catalog import CatalogRow
from indexer.embed import Embedder
from indexer.snapshot import Snapshot, SnapshotError, current_id, open_snapshot

from .errors import UnknownImage

log = logging.getLogger("pixscape.service")
# An absolute path left in a message: starts a word with "/" (not "a/b").
_ABSOLUTE = re.compile(r"(?<![\w.~-])/[^\s'\"()]+")
T = TypeVar("T")


def without_paths(text: str, data_dir: Path) -> str:
    """`text` with no absolute path in it: files of the data folder are named
    relative to it (snapshots/<id>/vectors.npy), any other path as <path>."""
    for root in {os.path.realpath(data_dir), str(data_dir.absolute())}:
        text = text.replace(root.rstrip("/") + "/", "")
    return _ABSOLUTE.sub("<path>", text)


class Derived:
    """Values computed from one snapshot on first use (the path engine, map
    payloads), each made once and kept as long as the snapshot is.

    Kept on the `Live` they come from, so they are dropped with it when a reload
    swaps it out and the last request using it ends, and no app shares them.
    """

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}
        self._making: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        """The value under `key`, made by `make()` if it is not there yet.

        Requests for one key wait for the one making it; different keys are made
        in parallel. A `make` that raises stores nothing (the next call retries).
        """
        with self._lock:
            if key in self._values:
                return cast(T, self._values[key])
            making = self._making.setdefault(key, threading.Lock())
        with making:
            with self._lock:
                if key in self._values:
                    return cast(T, self._values[key])
            value = make()
            with self._lock:
                self._values[key] = value
                self._making.pop(key, None)
            return value


@dataclass(frozen=True, eq=False)
class Live:
    """One opened snapshot plus its query embedder: immutable, swapped whole.

    `derived` holds what is computed from this snapshot alone (see Derived).
    """

    snapshot: Snapshot
    embedder: Embedder
    derived: Derived = field(default_factory=Derived, init=False, repr=False)

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
