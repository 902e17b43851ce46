"""GET/POST /api/path: a chain of images, each a small step from the last.

Routes run over the snapshot's k-NN graph (indexer.graph). An uploaded end is
attached to the graph through its nearest neighbours for that request only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, File, HTTPException, Query, UploadFile
from pydantic import BaseModel, Field

from indexer import graph as path_graph
from indexer import index as faiss_index
from indexer.snapshot import Snapshot

from ..deps import LiveDep, PoolDep, SettingsDep
from ..schemas import ErrorBody, ImageRef, QueryInfo
from ..state import Live
from ..uploads import embed_query, read_upload
from ..views import image_ref

router = APIRouter(tags=["paths"])

MAX_VIA = 16
MAX_AVOID = 1000
MAX_CHAIN = 1000
# ASCII digits and spaces only: pydantic-core's regex reads \d and \s as Unicode
# classes (newer than Python's int() knows), so a digit it passes could fail int().
_ID_LIST = r"^ *[0-9]{1,10}( *, *[0-9]{1,10})* *$"


class BadPathRequest(BaseModel):
    detail: str | list[dict[str, Any]]


ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "an id in source, target, via or avoid is unknown"},
    409: {
        "model": ErrorBody,
        "description": "no acceptable path: the ends are cut off from each other by `avoid`,"
        " by `min_similarity`, or by the images of earlier legs (a chain never shows an"
        " image twice); or the snapshot was built without a path graph",
    },
    422: {
        "model": BadPathRequest,
        "description": "bad parameters: out of range or malformed (detail is FastAPI's list),"
        " or contradictory (detail is a message), e.g. the same image or identical content"
        " twice among the ends and waypoints, an end that is also avoided, or max_steps"
        " below the number of ends and waypoints",
    },
    503: {"model": ErrorBody, "description": "no snapshot is loaded yet"},
}


# ---------------------------------------------------------------- models


class PathImage(BaseModel):
    image: ImageRef | None = Field(description="the catalog image; null for an uploaded end")
    upload: Literal["source", "target"] | None = Field(
        None, description="which uploaded end this is, if it is one"
    )
    similarity: float | None = Field(
        description="cosine similarity to the previous image of the chain; null for the first"
    )
    stop: bool = Field(description="true for the source, the waypoints and the target")


class PathResponse(BaseModel):
    snapshot: str
    took_ms: float = Field(description="server time spent (upload decode and embed included)")
    smoothness: float = Field(description="the power p used: a step of distance d costs d**p")
    min_similarity: float | None
    graph_k: int = Field(description="neighbours per image in the graph")
    hops: int = Field(description="graph edges in the route before any resampling")
    resampled: bool = Field(description="true when max_steps thinned the chain")
    total_cost: float = Field(description="sum of (1 - similarity)**p over the route's edges")
    mean_similarity: float | None = Field(description="mean over the steps of `chain`")
    weakest_similarity: float | None = Field(description="lowest step similarity in `chain`")
    weakest_step: int | None = Field(
        description="index in `chain` of the image that ends the weakest step"
    )
    uploads: dict[str, QueryInfo] = Field(default_factory=dict)
    chain: list[PathImage]


# ---------------------------------------------------------------- per-snapshot engine


@dataclass(frozen=True)
class _Engine:
    finder: path_graph.PathFinder
    canonical: np.ndarray
    by_sha: dict[str, int]  # content hash -> canonical id
    k: int
    power: float


_engines: OrderedDict[str, _Engine] = OrderedDict()
_engines_lock = threading.Lock()


def _engine(snapshot: Snapshot) -> _Engine:
    """The path engine of a snapshot, made once (two snapshots kept: old and new)."""
    if snapshot.graph is None:
        raise HTTPException(
            status_code=409,
            detail=f"snapshot {snapshot.id} has no path graph (built before paths existed):"
            " rebuild it with `pixscape index`",
        )
    with _engines_lock:
        found = _engines.get(snapshot.id)
        if found is None:
            params = snapshot.manifest.get("graph", {})
            canonical = path_graph.canonical_ids([r.sha256 for r in snapshot.rows])
            found = _Engine(
                finder=path_graph.PathFinder(snapshot.graph),
                canonical=canonical,
                by_sha={r.sha256: int(canonical[i]) for i, r in enumerate(snapshot.rows)},
                k=int(params.get("k", path_graph.DEFAULT_K)),
                power=float(params.get("power", path_graph.DEFAULT_POWER)),
            )
            _engines[snapshot.id] = found
            while len(_engines) > 2:
                _engines.popitem(last=False)
        return found


# ---------------------------------------------------------------- parameters


def _id_list(text: str | None, name: str, limit: int) -> list[int]:
    if not text:
        return []
    ids = [int(part) for part in text.split(",")]
    if len(ids) > limit:
        raise HTTPException(status_code=422, detail=f"{name}: at most {limit} ids")
    return ids


@dataclass(frozen=True)
class PathOptions:
    via: list[int]
    avoid: list[int]
    max_steps: int | None
    smoothness: float | None
    min_similarity: float | None


def path_options(
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
    )


PathOptionsDep = Annotated[PathOptions, Depends(path_options)]
EndId = Annotated[int | None, Query(ge=0, le=2**31 - 1, description="catalog id")]


# ---------------------------------------------------------------- solving


@dataclass(frozen=True)
class _Upload:
    which: Literal["source", "target"]
    vector: np.ndarray
    sha256: str
    info: QueryInfo


def _label(snapshot: Snapshot, end: int | _Upload) -> str:
    """How an error names an end: its catalog id (`end` is a row) or the upload."""
    return f"the uploaded {end.which}" if isinstance(end, _Upload) else f"image {snapshot.ids[end]}"


def _attachment(
    snapshot: Snapshot, engine: _Engine, upload: _Upload, stops: set[int]
) -> path_graph.Attachment:
    """The upload's k nearest distinct images; a catalog copy of it stands aside."""
    twin = engine.by_sha.get(upload.sha256)
    if twin is not None and twin in stops:
        raise HTTPException(
            status_code=422,
            detail=f"the uploaded {upload.which} is image {snapshot.ids[twin]} itself: it cannot be"
            " both an end and a stop of the same chain",
        )
    wanted = min(snapshot.count, 4 * engine.k + 8)
    sims, ids = faiss_index.search(snapshot.index, upload.vector, wanted, snapshot.vectors)
    sims, ids = sims[0], ids[0]
    ok = (ids >= 0) & (ids != (twin if twin is not None else -1))
    ok &= engine.canonical[np.where(ids >= 0, ids, 0)] == ids
    ids, sims = ids[ok][: engine.k], sims[ok][: engine.k]
    return path_graph.Attachment(ids=ids.astype(np.int64), dist=1.0 - sims.astype(np.float64))


def solve(live: Live, ends: tuple[int | _Upload, int | _Upload], opts: PathOptions) -> PathResponse:
    """Validate, route, resample and describe one path request (blocking work).

    Ends, waypoints and avoided images come in as catalog ids and are routed as
    snapshot rows; the chain goes out as images (with their ids) again.
    """
    started = time.perf_counter()
    snapshot = live.snapshot
    count = snapshot.count
    ids = snapshot.ids

    row = live.row_index  # UnknownImage (404) for an id no image has
    requested = [row(e) if isinstance(e, int) else e for e in (ends[0], *opts.via, ends[1])]
    avoided = [row(i) for i in opts.avoid]
    engine = _engine(snapshot)
    if opts.max_steps is not None and opts.max_steps < len(requested):
        raise HTTPException(
            status_code=422,
            detail=f"max_steps={opts.max_steps} cannot hold the {len(requested)} ends and"
            " waypoints",
        )
    power = opts.smoothness if opts.smoothness is not None else engine.power

    # Catalog stops route from their content's canonical node; each content once.
    seen: dict[int, int] = {}
    for end in requested:
        if isinstance(end, int):
            canon = int(engine.canonical[end])
            if canon in seen:
                same = (
                    "twice" if seen[canon] == end else f"and {ids[seen[canon]]} (identical content)"
                )
                raise HTTPException(
                    status_code=422,
                    detail=f"image {ids[end]} {same}: a chain shows each image once, so the ends"
                    " and waypoints must be distinct images",
                )
            seen[canon] = end
    avoid = {int(engine.canonical[i]) for i in avoided}
    if clash := avoid & set(seen):
        raise HTTPException(
            status_code=422,
            detail=f"image {ids[seen[min(clash)]]} is both avoided and an end or waypoint",
        )

    uploads = [e for e in ends if isinstance(e, _Upload)]
    if len(uploads) == 2 and uploads[0].sha256 == uploads[1].sha256:
        raise HTTPException(
            status_code=422, detail="the uploaded source and target are the same image"
        )
    attachments = []
    upload_node: dict[str, int] = {}
    for upload in uploads:
        twin = engine.by_sha.get(upload.sha256)
        attachments.append(_attachment(snapshot, engine, upload, set(seen)))
        if twin is not None:
            avoid.add(twin)  # the upload is shown; its catalog copy must not be too
        upload_node[upload.which] = count + len(upload_node)
    stops = [
        upload_node[e.which] if isinstance(e, _Upload) else int(engine.canonical[e])
        for e in requested
    ]
    try:
        route = engine.finder.route(
            stops,
            power=power,
            avoid=avoid,
            min_similarity=opts.min_similarity,
            attachments=attachments,
        )
    except path_graph.NoPath as exc:
        a, b = requested[exc.leg], requested[exc.leg + 1]
        why = []
        if opts.min_similarity is not None:
            why.append(f"every step at least {opts.min_similarity:g} similar")
        if avoid:
            why.append(f"{len(avoid)} images avoided")
        if exc.leg > 0:
            why.append("no image of the earlier legs used again")
        detail = f"no acceptable path from {_label(snapshot, a)} to {_label(snapshot, b)}"
        raise HTTPException(
            status_code=409, detail=detail + (f" with {', '.join(why)}" if why else "")
        ) from None

    chain = list(route.chain)
    for pos, end in zip(route.stops, requested, strict=True):
        if isinstance(end, int):
            chain[pos] = end  # the very id asked for, not its canonical twin
    extra = {upload_node[u.which]: u.vector for u in uploads}
    vectors = np.stack([extra[i] if i >= count else snapshot.vectors[i] for i in chain])
    arc = np.r_[0.0, np.cumsum(np.clip(1.0 - path_graph.step_similarities(vectors), 0, None))]
    keep = path_graph.resample(route.stops, arc, opts.max_steps or len(chain))
    sims = path_graph.step_similarities(vectors[keep])
    stop_pos = set(route.stops)
    which = {upload_node[u.which]: u.which for u in uploads}
    items = [
        PathImage(
            image=None if chain[p] >= count else image_ref(snapshot.rows[chain[p]]),
            upload=which.get(chain[p]),
            similarity=None if j == 0 else round(float(sims[j - 1]), 6),
            stop=p in stop_pos,
        )
        for j, p in enumerate(keep)
    ]
    weakest = int(np.argmin(sims)) if len(sims) else None
    return PathResponse(
        snapshot=snapshot.id,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
        smoothness=power,
        min_similarity=opts.min_similarity,
        graph_k=engine.k,
        hops=len(chain) - 1,
        resampled=len(keep) < len(chain),
        total_cost=round(route.cost, 9),
        mean_similarity=round(float(sims.mean()), 6) if len(sims) else None,
        weakest_similarity=round(float(sims[weakest]), 6) if weakest is not None else None,
        weakest_step=weakest + 1 if weakest is not None else None,
        uploads={u.which: u.info for u in uploads},
        chain=items,
    )


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
        ends: list[int | _Upload] = []
        for name, (given, _) in sides.items():
            if given is not None:
                ends.append(given)
                continue
            vector, info = embed_query(live, data[name], settings.max_pixels)
            sha = hashlib.sha256(data[name]).hexdigest()
            ends.append(_Upload("source" if name == "source" else "target", vector, sha, info))
        return solve(live, (ends[0], ends[1]), opts)

    response = await pool.run(work)
    response.took_ms = round((time.perf_counter() - started) * 1000, 2)
    return response
