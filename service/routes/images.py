"""Images by catalog id: metadata, neighbours, thumbnail, original file.

Files are only ever found through the catalog, never from a path in the request.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import FileResponse

from indexer import neighbours
from indexer.decode import MIME_TYPES
from indexer.thumbs import THUMB_MIME

from ..deps import ImageId, LiveDep, PoolDep, SettingsDep
from ..files import original_path
from ..filters import BAD_FILTER, FilterDep, rows_within
from ..schemas import MAX_K, ErrorBody, ImageInfo, ImagePage, SimilarResponse, Tag
from ..views import image_info, image_ref, scored_images
from ..words import image_tags

router = APIRouter(tags=["images"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no image with this id"}
}
_IMMUTABLE = "public, max-age=31536000, immutable"


def _cache_headers(sha256: str, version: str | None) -> dict[str, str]:
    if version is not None and version == sha256[: len(version)] and len(version) >= 8:
        return {"Cache-Control": _IMMUTABLE}
    return {"Cache-Control": "no-cache"}


@router.get(
    "/api/images",
    response_model=ImagePage,
    summary="The collection's images in id order, a page at a time",
    description="Ids are stable across snapshots but not contiguous (deleted images leave"
    " gaps): page with `offset`, not by guessing ids.",
)
def list_images(
    live: LiveDep,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ImagePage:
    rows = live.snapshot.rows
    return ImagePage(
        snapshot=live.snapshot.id,
        total=len(rows),
        offset=offset,
        images=[image_ref(r) for r in rows[offset : offset + limit]],
    )


@router.get("/api/images/{image_id}", response_model=ImageInfo, responses=NOT_FOUND)
def get_image(live: LiveDep, image_id: ImageId) -> ImageInfo:
    info = image_info(live.row(image_id))
    tags = image_tags(live, live.row_index(image_id))
    info.tags = [Tag(word=word, probability=round(p, 4)) for word, p in tags]
    return info


@router.get(
    "/api/images/{image_id}/similar",
    response_model=SimilarResponse,
    responses={
        **NOT_FOUND,
        **BAD_FILTER,
    },
    summary="The indexed images most similar to this one (itself excluded)",
)
async def similar(
    live: LiveDep,
    pool: PoolDep,
    settings: SettingsDep,
    image_id: ImageId,
    filt: FilterDep,
    k: Annotated[int | None, Query(ge=1, le=MAX_K)] = None,
) -> SimilarResponse:
    started = time.perf_counter()
    at = live.row_index(image_id)
    row = live.snapshot.rows[at]
    k = k or settings.default_k

    def work() -> SimilarResponse:
        snap = live.snapshot
        vector = snap.vectors[at]
        within = rows_within(live, filt)
        if within is None:
            scores, ids = neighbours.search(snap.index, vector, k + 1, snap.vectors)
        else:
            scores, ids = neighbours.search_within(snap.index, vector, k + 1, snap.vectors, within)
        keep = ids[0] != at  # drop itself, wherever a tie put it
        results = scored_images(snap.rows, scores[0][keep][:k], ids[0][keep][:k])
        return SimilarResponse(
            snapshot=snap.id,
            k=k,
            took_ms=0.0,
            query=image_ref(row),
            within=None if within is None else len(within),
            results=results,
        )

    response = await pool.run(work)
    response.took_ms = round((time.perf_counter() - started) * 1000, 2)
    return response


@router.get(
    "/api/images/{image_id}/thumbnail",
    response_class=FileResponse,
    responses={200: {"content": {THUMB_MIME: {}}}, **NOT_FOUND},
)
def thumbnail(
    live: LiveDep, image_id: ImageId, v: Annotated[str | None, Query(max_length=64)] = None
) -> FileResponse:
    row = live.row(image_id)
    return FileResponse(
        live.snapshot.thumbnail_path(image_id),
        media_type=THUMB_MIME,
        headers=_cache_headers(row.sha256, v),
    )


@router.get(
    "/api/images/{image_id}/file",
    response_class=FileResponse,
    responses={200: {"content": {m: {} for m in sorted(set(MIME_TYPES.values()))}}, **NOT_FOUND},
)
def original(
    live: LiveDep, image_id: ImageId, v: Annotated[str | None, Query(max_length=64)] = None
) -> FileResponse:
    row = live.row(image_id)
    path = original_path(live.snapshot, row)
    if path is None:
        raise HTTPException(status_code=404, detail=f"image {image_id} is no longer on disk")
    return FileResponse(
        path,
        media_type=MIME_TYPES.get(row.format, "application/octet-stream"),
        headers=_cache_headers(row.sha256, v),
    )
