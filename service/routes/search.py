"""POST /api/search: upload an image, get the most similar ones."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile

from indexer import neighbours

from ..deps import LiveDep, PoolDep, SettingsDep
from ..mapdata import placement
from ..schemas import MAX_K, ErrorBody, SearchResponse
from ..uploads import embed_query, read_upload
from ..views import scored_images

router = APIRouter(tags=["search"])


@router.post(
    "/api/search",
    response_model=SearchResponse,
    summary="Find the images most similar to an uploaded one",
    responses={
        400: {"model": ErrorBody, "description": "corrupt, truncated or empty image"},
        413: {"model": ErrorBody, "description": "upload over the size limit"},
        415: {"model": ErrorBody, "description": "not an image format we accept"},
        503: {"model": ErrorBody, "description": "no snapshot is loaded yet"},
    },
)
async def search(
    live: LiveDep,
    pool: PoolDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="JPEG, PNG, WebP, GIF, BMP or TIFF")],
    k: Annotated[int | None, Query(ge=1, le=MAX_K, description="results to return")] = None,
) -> SearchResponse:
    started = time.perf_counter()
    data = await read_upload(file, settings.max_upload_bytes)
    k = k or settings.default_k

    def work() -> SearchResponse:
        vector, query = embed_query(live, data, settings.max_pixels)
        scores, ids = neighbours.search(live.snapshot.index, vector, k, live.snapshot.vectors)
        return SearchResponse(
            snapshot=live.snapshot.id,
            k=k,
            took_ms=0.0,
            query=query,
            results=scored_images(live.snapshot.rows, scores[0], ids[0]),
            placement=placement(live.snapshot, vector, scores[0], ids[0]),
        )

    response = await pool.run(work)
    response.took_ms = round((time.perf_counter() - started) * 1000, 2)
    return response
