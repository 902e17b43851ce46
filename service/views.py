"""Catalog rows -> response models (URLs are built here, in one place)."""

from __future__ import annotations

import numpy as np

from indexer.catalog import CatalogRow
from indexer.scan import readable

from .schemas import ImageInfo, ImageRef, ScoredImage


def _urls(row: CatalogRow) -> dict[str, str]:
    # The content hash in the URL makes it safe to cache forever: a new snapshot
    # that gives this id to another image gives it another URL.
    version = row.sha256[:12]
    return {
        "thumbnail_url": f"/api/images/{row.id}/thumbnail?v={version}",
        "image_url": f"/api/images/{row.id}/file?v={version}",
    }


def image_ref(row: CatalogRow) -> ImageRef:
    # The name as people read it: the catalog's exact bytes need not be UTF-8 (nor
    # JSON); the file itself is served by id.
    return ImageRef(id=row.id, path=readable(row.path), label=row.label, **_urls(row))


def image_info(row: CatalogRow) -> ImageInfo:
    return ImageInfo(
        id=row.id,
        path=readable(row.path),
        label=row.label,
        sha256=row.sha256,
        size=row.size,
        width=row.width,
        height=row.height,
        format=row.format,
        **_urls(row),
    )


def scored_images(
    rows: tuple[CatalogRow, ...], scores: np.ndarray, found: np.ndarray
) -> list[ScoredImage]:
    """Search hits as results: `found` holds snapshot rows (FAISS ids), -1 where short."""
    return [
        ScoredImage(
            id=rows[i].id,
            path=readable(rows[i].path),
            label=rows[i].label,
            score=round(float(s), 6),
            **_urls(rows[i]),
        )
        for s, i in zip(scores, found, strict=True)
        if i >= 0
    ]
