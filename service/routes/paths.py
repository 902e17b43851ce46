"""GET/POST /api/path: a chain of images, each a small step from the last.

The parameters are parsed here; the solving (checks, routing over the k-NN
graph, uploaded ends, resampling) is service.pathfind's.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, HTTPException, Query, UploadFile

from indexer import graph as path_graph

from ..deps import LiveDep, PoolDep, SettingsDep
from ..filters import FilterDep, rows_within
from ..pathfind import End, PathOptions, solve, uploaded_end
from ..schemas import BadRequest, ErrorBody, PathResponse
from ..uploads import read_upload

router = APIRouter(tags=["paths"])

MAX_VIA = 16
MAX_AVOID = 1000
MAX_CHAIN = 1000
# ASCII digits and spaces only: pydantic-core's regex reads \d and \s as Unicode
# classes (newer than Python's int() knows), so a digit it passes could fail int().
_ID_LIST = r"^ *[0-9]{1,10}( *, *[0-9]{1,10})* *$"


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "an id in source, target, via or avoid is unknown"},
    409: {
        "model": ErrorBody,
        "description": "no acceptable path: the ends are cut off from each other by `avoid`,"
        " by `min_similarity`, or by the images of earlier legs (a chain never shows an"
        " image twice); or the snapshot was built without a path graph",
    },
    422: {
        "model": BadRequest,
        "description": "bad parameters: out of range or malformed (detail is FastAPI's list),"
        " or contradictory (detail is a message), e.g. the same image or identical content"
        " twice among the ends and waypoints, an end that is also avoided, or max_steps"
        " below the number of ends and waypoints, or an end outside the filter (`label`,"
        " `concept`) the chain keeps within",
    },
    503: {"model": ErrorBody, "description": "no snapshot is loaded yet"},
}


# ---------------------------------------------------------------- parameters


def _id_list(text: str | None, name: str, limit: int) -> list[int]:
    if not text:
        return []
    ids = [int(part) for part in text.split(",")]
    if len(ids) > limit:
        raise HTTPException(status_code=422, detail=f"{name}: at most {limit} ids")
    return ids


def path_options(
    live: LiveDep,
    filt: FilterDep,
    via: Annotated[
        str | None,
        Query(
            pattern=_ID_LIST,
            description=f"waypoints visited in order, comma-separated ids (at most {MAX_VIA})",
            examples=["12,40"],
        ),
    ] = None,
    avoid: Annotated[
        str | None,
        Query(
            pattern=_ID_LIST,
            description=f"ids the chain must not pass through, comma-separated (at most"
            f" {MAX_AVOID}); an image's exact duplicates are avoided with it",
        ),
    ] = None,
    max_steps: Annotated[
        int | None,
        Query(
            ge=2,
            le=MAX_CHAIN,
            description="resample the chain to at most this many images, keeping the ends"
            " and waypoints (default: the whole route)",
        ),
    ] = None,
    smoothness: Annotated[
        float | None,
        Query(
            ge=path_graph.MIN_POWER,
            le=path_graph.MAX_POWER,
            description="power p of the step cost (1 - similarity)**p: 1 takes the shortest"
            " route, higher prefers many small steps to one big jump (default: the"
            " snapshot's, set at build time)",
        ),
    ] = None,
    min_similarity: Annotated[
        float | None,
        Query(
            ge=-1.0,
            le=1.0,
            description="similarity floor: every step of the route must be at least this"
            " similar, or the answer is 409",
        ),
    ] = None,
) -> PathOptions:
    return PathOptions(
        via=_id_list(via, "via", MAX_VIA),
        avoid=_id_list(avoid, "avoid", MAX_AVOID),
        max_steps=max_steps,
        smoothness=smoothness,
        min_similarity=min_similarity,
        within=rows_within(live, filt),
    )


PathOptionsDep = Annotated[PathOptions, Depends(path_options)]
EndId = Annotated[int | None, Query(ge=0, le=2**31 - 1, description="catalog id")]


# ---------------------------------------------------------------- routes


@router.get(
    "/api/path",
    response_model=PathResponse,
    responses=ERRORS,
    summary="A chain of images from source to target, each a small step from the last",
)
async def get_path(
    live: LiveDep,
    pool: PoolDep,
    opts: PathOptionsDep,
    source: Annotated[int, Query(ge=0, le=2**31 - 1, description="catalog id")],
    target: Annotated[int, Query(ge=0, le=2**31 - 1, description="catalog id")],
) -> PathResponse:
    return await pool.run(solve, live, (source, target), opts)


@router.post(
    "/api/path",
    response_model=PathResponse,
    responses={
        **ERRORS,
        400: {"model": ErrorBody, "description": "corrupt, truncated or empty image"},
        413: {"model": ErrorBody, "description": "upload over the size limit"},
        415: {"model": ErrorBody, "description": "not an image format we accept"},
    },
    summary="A chain where either end may be an uploaded image",
    description="Give each end either as a catalog id (query `source` / `target`) or as an"
    " uploaded file (multipart `source_file` / `target_file`), exactly one per end. An"
    " uploaded image joins the graph through its nearest neighbours for this request only.",
)
async def post_path(
    live: LiveDep,
    pool: PoolDep,
    settings: SettingsDep,
    opts: PathOptionsDep,
    source: EndId = None,
    target: EndId = None,
    source_file: Annotated[UploadFile | None, File(description="the source image")] = None,
    target_file: Annotated[UploadFile | None, File(description="the target image")] = None,
) -> PathResponse:
    started = time.perf_counter()
    sides: dict[str, tuple[int | None, UploadFile | None]] = {
        "source": (source, source_file),
        "target": (target, target_file),
    }
    for name, (given, upload) in sides.items():
        if (given is None) == (upload is None):
            raise HTTPException(
                status_code=422,
                detail=f"give the {name} either as an id (`{name}`) or as an upload"
                f" (`{name}_file`), exactly one",
            )
    data = {
        name: await read_upload(upload, settings.max_upload_bytes)
        for name, (_, upload) in sides.items()
        if upload is not None
    }

    def work() -> PathResponse:
        def end(given: int | None, which: Literal["source", "target"]) -> End:
            if given is not None:
                return given
            return uploaded_end(live, which, data[which], settings.max_pixels)

        return solve(live, (end(source, "source"), end(target, "target")), opts)

    response = await pool.run(work)
    response.took_ms = round((time.perf_counter() - started) * 1000, 2)
    return response
