"""The map: layouts with their quality, every point compactly, the thumbnail atlases.

GET /api/maps/{layout} sends all N points in one compact binary body (see
mapdata.MAP_FORMAT); the bytes are built once per snapshot and layout and reused.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from indexer.snapshot import Snapshot

# The map codec lives in service.mapdata; MAGIC, decode_binary and encode_binary
# are re-exported here (the `as` form) for the tests, bench/ and Python clients
# that import them from this module.
from .. import mapdata
from ..deps import LiveDep, PoolDep
from ..mapdata import MAGIC as MAGIC
from ..mapdata import MAP_FORMAT, Cluster, GridShape, LayoutQuality, MapHeader
from ..mapdata import decode_binary as decode_binary
from ..mapdata import encode_binary as encode_binary
from ..schemas import ErrorBody

router = APIRouter(tags=["maps"])

NO_SNAPSHOT: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "no snapshot is loaded yet"}
}


class LayoutInfo(BaseModel):
    name: str
    url: str
    params: dict[str, Any] = Field(description="parameters and seed the layout was built with")
    quality: LayoutQuality | None
    seconds: float | None = Field(default=None, description="time the build spent on it")
    grid: GridShape | None = None


class MapsIndex(BaseModel):
    snapshot: str
    count: int
    layouts: list[LayoutInfo]
    clusters: list[Cluster]
    atlas_url: str | None


class AtlasSheet(BaseModel):
    url: str
    width: int
    height: int
    first: int = Field(description="catalog id in the sheet's first cell")
    count: int
    bytes: int


class AtlasSize(BaseModel):
    cell: int = Field(description="cell side in pixels")
    columns: int
    per_sheet: int
    sheets: list[AtlasSheet]


class AtlasIndex(BaseModel):
    snapshot: str
    count: int
    format: str
    mime: str
    sheet_size: int
    fit: str = Field(description="how a thumbnail fills its square cell: cover (centre crop)")
    rule: str = Field(description="where image `id` sits: its sheet and pixel offset")
    sizes: list[AtlasSize]


def _atlas_url(snap: Snapshot, cell: int, sheet: int) -> str:
    return f"/api/atlas/{cell}/{sheet}?v={snap.id}"


# ---------------------------------------------------------------- routes


@router.get(
    "/api/maps",
    response_model=MapsIndex,
    responses=NO_SNAPSHOT,
    summary="The layouts this snapshot has, with their quality figures, and its clusters",
)
def list_maps(live: LiveDep) -> MapsIndex:
    snap = live.snapshot
    return MapsIndex(
        snapshot=snap.id,
        count=snap.count,
        layouts=[
            LayoutInfo(
                name=name,
                url=f"/api/maps/{name}",
                params=mapdata.layout_info(snap, name).get("params", {}),
                quality=mapdata.layout_info(snap, name).get("quality"),
                seconds=mapdata.layout_info(snap, name).get("seconds"),
                grid=mapdata.layout_info(snap, name).get("grid"),
            )
            for name in snap.layouts
        ],
        clusters=mapdata.clusters(snap),
        atlas_url="/api/atlas" if snap.atlas else None,
    )


@router.get(
    "/api/maps/{layout}",
    summary="Every image's position on one layout, compactly",
    description=MAP_FORMAT,
    response_class=Response,
    responses={
        200: {
            "description": "all points: binary by default, base64 columns with ?format=json",
            "model": MapHeader,  # documents the application/json form (and the header)
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        304: {"description": "unchanged since the ETag sent in If-None-Match"},
        404: {"model": ErrorBody, "description": "this snapshot has no such layout"},
        **NO_SNAPSHOT,
    },
)
async def get_map(
    live: LiveDep,
    pool: PoolDep,
    request: Request,
    layout: Annotated[str, Path(pattern=r"^[a-z]{1,16}$", description="tsne, umap or grid")],
    format: Annotated[Literal["binary", "json"], Query(description="body encoding")] = "binary",
) -> Response:
    snap = live.snapshot
    if layout not in snap.layouts:
        present = ", ".join(snap.layouts) or "none (rebuild the snapshot)"
        raise HTTPException(status_code=404, detail=f"no layout {layout!r}; present: {present}")
    etag = f'"{snap.id}-{layout}-{format}"'
    headers = {"ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    body = await pool.run(mapdata.payload, live, layout, format)
    media = "application/octet-stream" if format == "binary" else "application/json"
    return Response(body, media_type=media, headers=headers)


@router.get(
    "/api/atlas",
    response_model=AtlasIndex,
    responses={404: {"model": ErrorBody, "description": "no atlas"}, **NO_SNAPSHOT},
    summary="The thumbnail sprite sheets and where each image sits in them",
)
def atlas_index(live: LiveDep) -> AtlasIndex:
    snap = live.snapshot
    if not snap.atlas:
        raise HTTPException(status_code=404, detail="this snapshot has no thumbnail atlas")
    sizes = [
        AtlasSize(
            cell=s["cell"],
            columns=s["columns"],
            per_sheet=s["per_sheet"],
            sheets=[
                AtlasSheet(
                    url=_atlas_url(snap, s["cell"], i),
                    **{k: v for k, v in sh.items() if k != "file"},
                )
                for i, sh in enumerate(s["sheets"])
            ],
        )
        for s in snap.atlas["sizes"]
    ]
    a = snap.atlas
    return AtlasIndex(
        snapshot=snap.id,
        count=a["count"],
        format=a["format"],
        mime=a["mime"],
        sheet_size=a["sheet_size"],
        fit=a["fit"],
        rule=a["rule"],
        sizes=sizes,
    )


@router.get(
    "/api/atlas/{cell}/{sheet}",
    response_class=FileResponse,
    responses={
        200: {"content": {"image/webp": {}, "image/jpeg": {}}},
        404: {"model": ErrorBody, "description": "no such cell size or sheet"},
        **NO_SNAPSHOT,
    },
    summary="One sprite sheet",
)
def atlas_sheet(
    live: LiveDep,
    cell: Annotated[int, Path(ge=1, le=4096, description="cell side in pixels")],
    sheet: Annotated[int, Path(ge=0, le=2**31 - 1)],
    v: Annotated[str | None, Query(max_length=64, description="snapshot id")] = None,
) -> FileResponse:
    snap = live.snapshot
    # The file is found through the atlas index, never from the request's path.
    for size in snap.atlas.get("sizes", []):
        if size["cell"] == cell and sheet < len(size["sheets"]):
            immutable = v == snap.id
            return FileResponse(
                snap.path / size["sheets"][sheet]["file"],
                media_type=snap.atlas["mime"],
                headers={
                    "Cache-Control": "public, max-age=31536000, immutable"
                    if immutable
                    else "no-cache"
                },
            )
    raise HTTPException(status_code=404, detail=f"no {cell} px atlas sheet {sheet}")
