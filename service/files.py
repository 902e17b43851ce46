"""The collection's original files, found through the catalog only."""

from __future__ import annotations

import os

from indexer.catalog import CatalogRow
from indexer.snapshot import Snapshot


def original_path(snapshot: Snapshot, row: CatalogRow) -> str | None:
    """The file of `row` in the collection folder; None when it is gone, or when
    it now leads outside the folder (the catalog is ours, the folder the user's:
    a file swapped for a symlink since indexing must not be followed out)."""
    root = os.path.realpath(snapshot.collection_root)
    path = os.path.realpath(os.path.join(root, row.path))
    if os.path.commonpath([root, path]) != root or not os.path.isfile(path):
        return None
    return path
