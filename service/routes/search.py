"""POST /api/search: upload an image, get the most similar ones."""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
from fastapi import APIRouter, File, HTTPException, Query, UploadFile

from indexer import index as faiss_index
from indexer.decode import DecodeError, center_crop, decode_image

from ..deps import LiveDep, PoolDep, SettingsDep
from ..schemas import MAX_K, ErrorBody, QueryInfo, SearchResponse
from ..state import Live
from ..views import scored_images
from .maps import placement

router = APIRouter(tags=["search"])

_UPLOAD_CHUNK = 1 << 16


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The upload's bytes, refusing (413) as soon as they pass `limit`."""
    chunks, total = [], 0
    while chunk := await upload.read(_UPLOAD_CHUNK):
        total += len(chunk)
        if total > limit:
            raise HTTPException(
                status_code=413, detail=f"upload larger than the {limit:,} byte limit"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def embed_query(live: Live, data: bytes, max_pixels: int) -> tuple[np.ndarray, QueryInfo]:
    """Decode and embed one uploaded image exactly as the indexer did its files."""
    try:
        decoded = decode_image(data, max_pixels=max_pixels)
    except DecodeError as exc:
        status = 415 if exc.unsupported else 400
        raise HTTPException(status_code=status, detail=exc.reason) from exc
    pixels = center_crop(decoded.image, live.embedder.input_size)
    vector = live.embedder.embed(pixels[None])[0]
    return vector, QueryInfo(width=decoded.width, height=decoded.height, format=decoded.format)


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
        scores, ids = faiss_index.search(live.snapshot.index, vector, k, live.snapshot.vectors)
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
