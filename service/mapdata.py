"""The map's points as one compact body, built once per snapshot and layout, and
where a query image falls on each layout.

GET /api/maps/{layout} (routes/maps.py) sends `payload()`; MAP_FORMAT below is
the format's description, as the OpenAPI document gives it.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from indexer import layout as layouts
from indexer import neighbours
from indexer.snapshot import Snapshot

from .schemas import MapPoint
from .state import Live

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


class Cluster(BaseModel):
    id: int
    size: int
    representative: int = Field(description="catalog id of the image nearest the cluster centre")
    label: str | None = Field(description="the majority folder label of its images, if any")
    label_share: float
    name: str | None = Field(
        None,
        description="what the map calls it: the concept most over-represented in it against"
        " the whole collection, else its folder label in plain words; no two share one",
    )
    name_from: Literal["concepts", "folder"] | None = Field(
        None, description="where the name comes from (null: unnamed, or built before names)"
    )
    centers: dict[str, list[float]] = Field(description="layout -> median [x, y] of its images")


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


def layout_info(snap: Snapshot, name: str) -> dict[str, Any]:
    info: dict[str, Any] = snap.maps.get("layouts", {}).get(name, {})
    return info


def clusters(snap: Snapshot) -> list[Cluster]:
    return [Cluster(**c) for c in snap.maps.get("clusters", [])]


def _header(snap: Snapshot, name: str) -> MapHeader:
    info = layout_info(snap, name)
    return MapHeader(
        snapshot=snap.id,
        layout=name,
        count=snap.count,
        columns=[],
        clusters=clusters(snap),
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


def payload(live: Live, name: str, fmt: Literal["binary", "json"]) -> bytes:
    """The body of GET /api/maps/{name} in `fmt`, encoded once per snapshot (kept
    with it: see state.Derived); `name` must be one of its layouts."""
    snap = live.snapshot
    encode = encode_binary if fmt == "binary" else encode_json
    return live.derived.get(("map", name, fmt), lambda: encode(snap, name))


def placement(
    snap: Snapshot, vector: np.ndarray, top: tuple[np.ndarray, np.ndarray] | None = None
) -> dict[str, MapPoint]:
    """Where a query image falls on each layout (see indexer.layout.place for why
    neighbour-weighted). Reuses the search's own top-k (scores, rows) when it has
    enough."""
    if not snap.layouts:
        return {}
    if top is None or len(top[1]) < min(layouts.PLACE_K, snap.count):
        found = neighbours.search(snap.index, vector, layouts.PLACE_K, snap.vectors)
        top = found[0][0], found[1][0]
    return _placed(snap, *top)


def word_placement(snap: Snapshot, scores: np.ndarray, rows: np.ndarray) -> dict[str, MapPoint]:
    """Where a word's images lie on each layout: its best images, weighted by their
    mass the way a query image's neighbours are by similarity."""
    return _placed(snap, scores, rows) if snap.layouts and len(rows) else {}


def _placed(snap: Snapshot, scores: np.ndarray, rows: np.ndarray) -> dict[str, MapPoint]:
    out = {}
    for name, pos in snap.layouts.items():
        xy = layouts.place(scores, rows, pos)
        if xy is not None:
            out[name] = MapPoint(x=round(xy[0], 6), y=round(xy[1], 6))
    return out
