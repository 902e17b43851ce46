"""Acting on a selection of images: export it, find more like it, walk it as a tour.

A selection is a list of catalog ids in a JSON body (a map lasso can hold
thousands: too many for a query string).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from indexer import neighbours, routing

from ..deps import LiveDep, PoolDep, SettingsDep
from ..errors import BadSelection
from ..export import Entry, as_csv, as_json, plan_zip, stream_zip
from ..filters import FilterDep, rows_within
from ..pathfind import PathOptions, engine, solve
from ..schemas import MAX_K, BadRequest, ErrorBody, PathResponse, SearchResponse
from ..state import Live
from ..views import scored_images

router = APIRouter(tags=["selection"])

MAX_SELECTION = 100_000
MAX_TOUR = 200
# "More like these" minus "not like those": the negatives' mean weighs this much
# against the positives' (Rocchio's feedback, with the usual smaller weight).
NEGATIVE_WEIGHT = 0.5

Ids = Annotated[
    list[Annotated[int, Field(ge=0, le=2**31 - 1)]],
    Field(min_length=1, max_length=MAX_SELECTION, description="catalog ids"),
]
BAD_SELECTION: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "a body that is not JSON"},
    404: {"model": ErrorBody, "description": "an id no image has"},
    422: {"model": BadRequest, "description": "an empty or malformed selection"},
}


class ExportRequest(BaseModel):
    ids: Ids
    format: Literal["csv", "json", "zip"] = Field(
        description="csv or json: id, path, label, score; zip: the original files"
    )
    scores: list[float | None] | None = Field(
        None, description="a score for each id (e.g. the search's), in the same order"
    )


class LikeRequest(BaseModel):
    ids: Ids = Field(description="the images to find more like (their mean is the query)")
    negative: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] = Field(
        default_factory=list,
        max_length=MAX_SELECTION,
        description="images to steer away from: their mean, at half weight, is subtracted",
    )
    k: int | None = Field(None, ge=1, le=MAX_K)


class TourRequest(BaseModel):
    ids: list[Annotated[int, Field(ge=0, le=2**31 - 1)]] = Field(
        min_length=2, max_length=MAX_TOUR, description="the images to visit, in any order"
    )


def _rows(live: Live, ids: list[int]) -> np.ndarray:
    """Snapshot rows of `ids`, each once, in the order given (UnknownImage on a bad id)."""
    return np.array([live.row_index(i) for i in dict.fromkeys(ids)], dtype=np.int64)


@router.post(
    "/api/export",
    summary="Download a selection: its list as CSV or JSON, or its files as a zip",
    response_class=Response,
    responses={
        200: {
            "content": {"text/csv": {}, "application/json": {}, "application/zip": {}},
            "description": "an attachment; a zip lists files gone from disk in MISSING.txt",
        },
        413: {"model": ErrorBody, "description": "the files are over the export size limit"},
        **BAD_SELECTION,
    },
)
def export(live: LiveDep, settings: SettingsDep, body: ExportRequest) -> Response:
    if body.scores is not None and len(body.scores) != len(body.ids):
        raise BadSelection(f"scores: {len(body.scores)} given for {len(body.ids)} ids")
    scores = dict(zip(body.ids, body.scores or [None] * len(body.ids), strict=True))
    rows = live.snapshot.rows
    entries = [Entry(rows[r], scores[int(rows[r].id)]) for r in _rows(live, body.ids)]
    name = f"pixscape-{live.snapshot.id}-{len(entries)}"
    if body.format == "csv":
        return Response(
            as_csv(entries),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if body.format == "json":
        return Response(
            as_json(live.snapshot.id, entries),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{name}.json"'},
        )
    plan = plan_zip(live, entries, settings.max_export_bytes)
    return StreamingResponse(
        stream_zip(plan),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{name}.zip"',
            "X-Export-Files": str(len(plan.files)),
            "X-Export-Missing": str(len(plan.missing)),
        },
    )


@router.post(
    "/api/search/like",
    response_model=SearchResponse,
    summary="More like these: the selection's mean as the query, minus any negatives",
    responses={
        **BAD_SELECTION,
        422: {
            "model": BadRequest,
            "description": "an empty selection, a bad filter, or an image both wanted and not",
        },
    },
)
async def like(
    live: LiveDep, pool: PoolDep, settings: SettingsDep, body: LikeRequest, filt: FilterDep
) -> SearchResponse:
    started = time.perf_counter()
    positive, negative = _rows(live, body.ids), _rows(live, body.negative)
    if both := set(positive.tolist()) & set(negative.tolist()):
        raise BadSelection(f"image {live.snapshot.ids[min(both)]} is both wanted and not")
    k = body.k or settings.default_k

    def work() -> SearchResponse:
        snap = live.snapshot
        vectors = snap.vectors
        query = np.asarray(vectors[np.sort(positive)], np.float32).mean(axis=0)
        if len(negative):
            query -= NEGATIVE_WEIGHT * np.asarray(vectors[np.sort(negative)], np.float32).mean(0)
        query /= max(float(np.linalg.norm(query)), 1e-12)
        within = rows_within(live, filt)
        given = np.union1d(positive, negative)
        if within is not None:
            within = np.setdiff1d(within, given, assume_unique=True)
            scores, ids = neighbours.search_within(snap.index, query, k, vectors, within)
        else:
            scores, ids = neighbours.search(snap.index, query, k + len(given), vectors)
        keep = ~np.isin(ids[0], given)
        return SearchResponse(
            snapshot=snap.id,
            k=k,
            took_ms=0.0,
            query=None,
            within=None if within is None else len(within),
            results=scored_images(snap.rows, scores[0][keep][:k], ids[0][keep][:k]),
        )

    response = await pool.run(work)
    response.took_ms = round((time.perf_counter() - started) * 1000, 2)
    return response


@router.post(
    "/api/tour",
    response_model=PathResponse,
    summary="One chain through all the selected images, along the k-NN graph",
    description="The images are ordered so that each leg is short (nearest next, then"
    " 2-opt), identical copies visited once, and the legs routed as GET /api/path routes"
    " its waypoints: every selected image is a stop of the chain.",
    responses={
        **BAD_SELECTION,
        409: {"model": ErrorBody, "description": "no chain joins them, or no path graph"},
    },
)
async def tour(live: LiveDep, pool: PoolDep, body: TourRequest) -> PathResponse:
    started = time.perf_counter()
    rows = _rows(live, body.ids)

    def work() -> PathResponse:
        canonical = engine(live).canonical
        # One of each content: a chain shows an image once.
        _, first = np.unique(canonical[rows], return_index=True)
        stops = rows[np.sort(first)]
        if len(stops) < 2:
            raise BadSelection("a tour needs two different images")
        order = stops[routing.tour_order(live.snapshot.vectors[stops])]
        ids = [int(live.snapshot.ids[r]) for r in order]
        opts = PathOptions(
            via=ids[1:-1], avoid=[], max_steps=None, smoothness=None, min_similarity=None
        )
        return solve(live, (ids[0], ids[-1]), opts)

    response = await pool.run(work)
    response.took_ms = round((time.perf_counter() - started) * 1000, 2)
    return response
