"""The map: layouts with their quality, every point compactly, the thumbnail atlases.

GET /api/maps/{layout} sends all N points in one compact binary body (see
MAP_FORMAT below); the bytes are built once per snapshot and layout and reused.
"""

from __future__ import annotations

import base64
import json
import threading
from collections import OrderedDict
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from indexer import index as faiss_index
from indexer import layout as layouts
from indexer.snapshot import Snapshot

from ..deps import LiveDep, PoolDep
from ..schemas import ErrorBody, MapPoint

router = APIRouter(tags=["maps"])

MAGIC = b"PXMAP1\0\0"
MAP_FORMAT = """\
Binary body (`application/octet-stream`, all numbers little-endian):

| bytes | content |
|---|---|
| 0-7 | magic `PXMAP1\\0\\0` |
| 8-11 | uint32 `H`: length of the JSON header |
| 12 .. 12+H | UTF-8 JSON header (space-padded so the columns start on an 8-byte boundary) |
| then | the columns, each at the byte `offset` the header gives, `count` values each |

The header is the `MapHeader` schema: snapshot, layout, count, the columns
(`id` int32, `x` float32, `y` float32, `cluster` int16; x and y in [0, 1], one
scale for both axes, y downwards), the clusters and the layout's quality. In a
browser: `new Float32Array(buf, col.offset, count)`.

`?format=json` returns the same header as JSON with each column's values as
base64 of the same little-endian bytes (`MapColumns`), for clients that cannot
read binary. 100,000 points are ~1.4 MB binary, ~1.9 MB JSON.
"""
_DTYPES = {"int32": "<i4", "float32": "<f4", "int16": "<i2"}
_CACHE_SIZE = 8
_cache: OrderedDict[tuple[str, str, str], bytes] = OrderedDict()
_cache_lock = threading.Lock()

NO_SNAPSHOT: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorBody, "description": "no snapshot is loaded yet"}
}


class LayoutQuality(BaseModel):
    trustworthiness: float | None = Field(
        description="scikit-learn trustworthiness of the map against the embedding, on a sample"
    )
    knn_preservation: float | None = Field(
        description="mean share of each image's k nearest neighbours that stay its k nearest"
        " on the map"
    )
    k: int
    sample: int = Field(description="images in the trustworthiness sample")


class GridShape(BaseModel):
    cols: int
    rows: int
    cell: float = Field(description="side of a cell in map units (1 / max(cols, rows))")


class LayoutInfo(BaseModel):
    name: str
    url: str
    params: dict[str, Any] = Field(description="parameters and seed the layout was built with")
    quality: LayoutQuality | None
    seconds: float | None = Field(default=None, description="time the build spent on it")
    grid: GridShape | None = None


class Cluster(BaseModel):
    id: int
    size: int
    representative: int = Field(description="catalog id of the image nearest the cluster centre")
    label: str | None = Field(description="the majority folder label of its images, if any")
    label_share: float
    centers: dict[str, list[float]] = Field(description="layout -> median [x, y] of its images")


class MapsIndex(BaseModel):
    snapshot: str
    count: int
    layouts: list[LayoutInfo]
    clusters: list[Cluster]
    atlas_url: str | None


class MapColumn(BaseModel):
    name: Literal["id", "x", "y", "cluster"]
    dtype: Literal["int32", "float32", "int16"]
    offset: int = Field(description="byte offset in the binary body")
    data: str | None = Field(default=None, description="base64 of the values (JSON form only)")


class MapHeader(BaseModel):
    format: Literal["pixscape-map/1"] = "pixscape-map/1"
    snapshot: str
    layout: str
    count: int
    columns: list[MapColumn]
    clusters: list[Cluster]
    quality: LayoutQuality | None
    grid: GridShape | None = None


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


# ---------------------------------------------------------------- helpers


def _layout_info(snap: Snapshot, name: str) -> dict[str, Any]:
    info: dict[str, Any] = snap.maps.get("layouts", {}).get(name, {})
    return info


def _clusters(snap: Snapshot) -> list[Cluster]:
    return [Cluster(**c) for c in snap.maps.get("clusters", [])]


def _header(snap: Snapshot, name: str) -> MapHeader:
    info = _layout_info(snap, name)
    return MapHeader(
        snapshot=snap.id,
        layout=name,
        count=snap.count,
        columns=[],
        clusters=_clusters(snap),
        quality=info.get("quality"),
        grid=info.get("grid"),
    )


def _columns(snap: Snapshot, name: str) -> list[tuple[str, str, np.ndarray]]:
    pos = snap.layouts[name]
    n = snap.count
    cluster = snap.clusters if snap.clusters is not None else np.full(n, -1, np.int16)
    return [
        ("id", "int32", np.asarray(snap.ids, dtype="<i4")),
        ("x", "float32", np.ascontiguousarray(pos[:, 0], dtype="<f4")),
        ("y", "float32", np.ascontiguousarray(pos[:, 1], dtype="<f4")),
        ("cluster", "int16", np.asarray(cluster, dtype="<i2")),
    ]


def encode_binary(snap: Snapshot, name: str) -> bytes:
    header = _header(snap, name)
    cols = _columns(snap, name)
    # Offsets depend on the header's length, which depends on the offsets: lay out
    # with a generous width for each offset, then pad the header to that length.
    header.columns = [MapColumn(name=c, dtype=d, offset=10**12) for c, d, _ in cols]  # type: ignore[arg-type]
    room = len(header.model_dump_json(exclude_none=True).encode())
    start = (12 + room + 7) // 8 * 8
    offset, columns = start, []
    for c, d, values in cols:
        columns.append(MapColumn(name=c, dtype=d, offset=offset))  # type: ignore[arg-type]
        offset += (values.nbytes + 7) // 8 * 8
    header.columns = columns
    text = header.model_dump_json(exclude_none=True).encode()
    text += b" " * (start - 12 - len(text))
    parts = [MAGIC, len(text).to_bytes(4, "little"), text]
    for _, _, values in cols:
        raw = values.tobytes()
        parts.append(raw + b"\0" * (-len(raw) % 8))
    return b"".join(parts)


def encode_json(snap: Snapshot, name: str) -> bytes:
    header = _header(snap, name)
    header.columns = [
        MapColumn(name=c, dtype=d, offset=0, data=base64.b64encode(v.tobytes()).decode())  # type: ignore[arg-type]
        for c, d, v in _columns(snap, name)
    ]
    return header.model_dump_json(exclude_none=True).encode()


def decode_binary(body: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The inverse of encode_binary (for tests and Python clients)."""
    if body[:8] != MAGIC:
        raise ValueError("not a pixscape map")
    size = int.from_bytes(body[8:12], "little")
    header = json.loads(body[12 : 12 + size])
    count = header["count"]
    return header, {
        c["name"]: np.frombuffer(body, dtype=_DTYPES[c["dtype"]], count=count, offset=c["offset"])
        for c in header["columns"]
    }


def _payload(snap: Snapshot, name: str, fmt: str) -> bytes:
    key = (f"{snap.path}", name, fmt)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    body = encode_binary(snap, name) if fmt == "binary" else encode_json(snap, name)
    with _cache_lock:
        _cache[key] = body
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return body


def placement(
    snap: Snapshot, vector: np.ndarray, scores: np.ndarray, ids: np.ndarray
) -> dict[str, MapPoint]:
    """Where a query image falls on each layout (see indexer.layout.place for why
    neighbour-weighted). Reuses the search's own top-k when it has enough."""
    if not snap.layouts:
        return {}
    if len(ids) < min(layouts.PLACE_K, snap.count):
        top_scores, top_ids = faiss_index.search(snap.index, vector, layouts.PLACE_K, snap.vectors)
        scores, ids = top_scores[0], top_ids[0]
    out = {}
    for name, pos in snap.layouts.items():
        xy = layouts.place(scores, ids, pos)
        if xy is not None:
            out[name] = MapPoint(x=round(xy[0], 6), y=round(xy[1], 6))
    return out


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
                params=_layout_info(snap, name).get("params", {}),
                quality=_layout_info(snap, name).get("quality"),
                seconds=_layout_info(snap, name).get("seconds"),
                grid=_layout_info(snap, name).get("grid"),
            )
            for name in snap.layouts
        ],
        clusters=_clusters(snap),
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
    body = await pool.run(_payload, snap, layout, format)
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
