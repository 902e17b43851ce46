"""Path solving: a chain of images from one end to the other, each a small step
from the last, over the snapshot's k-NN graph (indexer.graph).

`solve` is the whole request after its parameters parsed: check the ends and
waypoints, attach uploaded ends, route, resample, describe. It refuses with the
typed errors of errors.py (the app's handler gives them their status codes).

Ends, waypoints and avoided images come in as catalog ids and are routed as
snapshot rows; the chain goes out as images (with their ids) again. An uploaded
end joins the graph through its nearest neighbours, for that request only.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from indexer import graph as path_graph
from indexer import neighbours, routing
from indexer.snapshot import Snapshot

from .errors import InvalidPath, NoPath, NoPathGraph
from .schemas import PathImage, PathResponse, QueryInfo
from .state import Live
from .uploads import embed_query
from .views import image_ref


@dataclass(frozen=True)
class PathOptions:
    via: list[int]
    avoid: list[int]
    max_steps: int | None
    smoothness: float | None
    min_similarity: float | None
    # Rows the chain must stay within (service.filters); None: anywhere.
    within: np.ndarray | None = None


@dataclass(frozen=True)
class UploadedEnd:
    which: Literal["source", "target"]
    vector: np.ndarray
    sha256: str
    info: QueryInfo


End = int | UploadedEnd  # a catalog id (a snapshot row once looked up) or an upload


def uploaded_end(
    live: Live, which: Literal["source", "target"], data: bytes, max_pixels: int
) -> UploadedEnd:
    """Decode and embed an uploaded end (blocking work)."""
    vector, info = embed_query(live, data, max_pixels)
    return UploadedEnd(which, vector, hashlib.sha256(data).hexdigest(), info)


# ---------------------------------------------------------------- per-snapshot engine


@dataclass(frozen=True)
class Engine:
    finder: routing.PathFinder
    canonical: np.ndarray
    by_sha: dict[str, int]  # content hash -> canonical id
    k: int
    power: float


def engine(live: Live) -> Engine:
    """The path engine of a snapshot, made once and kept with it (state.Derived)."""
    snapshot = live.snapshot
    if snapshot.graph is None:
        raise NoPathGraph(
            f"snapshot {snapshot.id} has no path graph (built before paths existed):"
            " rebuild it with `pixscape index`"
        )
    return live.derived.get("path-engine", lambda: _make_engine(snapshot))


def _make_engine(snapshot: Snapshot) -> Engine:
    params = snapshot.manifest.graph
    assert snapshot.graph is not None and params is not None  # open_snapshot checks both
    canonical = path_graph.canonical_ids([r.sha256 for r in snapshot.rows])
    return Engine(
        finder=routing.PathFinder(snapshot.graph),
        canonical=canonical,
        by_sha={r.sha256: int(canonical[i]) for i, r in enumerate(snapshot.rows)},
        k=params.k,
        power=params.power,
    )


# ---------------------------------------------------------------- checks


def _label(snapshot: Snapshot, end: End) -> str:
    """How an error names an end: its catalog id (`end` is a row) or the upload."""
    if isinstance(end, UploadedEnd):
        return f"the uploaded {end.which}"
    return f"image {snapshot.ids[end]}"


def _distinct_stops(snapshot: Snapshot, eng: Engine, requested: Sequence[End]) -> dict[int, int]:
    """Canonical node -> row of each catalog stop: each content once, or InvalidPath."""
    ids = snapshot.ids
    seen: dict[int, int] = {}
    for end in requested:
        if isinstance(end, int):
            canon = int(eng.canonical[end])
            if canon in seen:
                same = (
                    "twice" if seen[canon] == end else f"and {ids[seen[canon]]} (identical content)"
                )
                raise InvalidPath(
                    f"image {ids[end]} {same}: a chain shows each image once, so the ends"
                    " and waypoints must be distinct images"
                )
            seen[canon] = end
    return seen


def _attachment(
    snapshot: Snapshot, eng: Engine, upload: UploadedEnd, stops: set[int]
) -> routing.Attachment:
    """The upload's k nearest distinct images; a catalog copy of it stands aside."""
    twin = eng.by_sha.get(upload.sha256)
    if twin is not None and twin in stops:
        raise InvalidPath(
            f"the uploaded {upload.which} is image {snapshot.ids[twin]} itself: it cannot be"
            " both an end and a stop of the same chain"
        )
    wanted = min(snapshot.count, 4 * eng.k + 8)
    sims, ids = neighbours.search(snapshot.index, upload.vector, wanted, snapshot.vectors)
    sims, ids = sims[0], ids[0]
    ok = (ids >= 0) & (ids != (twin if twin is not None else -1))
    ok &= eng.canonical[np.where(ids >= 0, ids, 0)] == ids
    ids, sims = ids[ok][: eng.k], sims[ok][: eng.k]
    return routing.Attachment(ids=ids.astype(np.int64), dist=1.0 - sims.astype(np.float64))


def _no_path(
    snapshot: Snapshot,
    exc: routing.NoPath,
    requested: Sequence[End],
    opts: PathOptions,
    avoid: set[int],
) -> NoPath:
    """The refusal for a leg with no route, naming what the request ruled out."""
    a, b = requested[exc.leg], requested[exc.leg + 1]
    why = []
    if opts.min_similarity is not None:
        why.append(f"every step at least {opts.min_similarity:g} similar")
    if avoid:
        why.append(f"{len(avoid)} images avoided")
    if exc.leg > 0:
        why.append("no image of the earlier legs used again")
    detail = f"no acceptable path from {_label(snapshot, a)} to {_label(snapshot, b)}"
    return NoPath(detail + (f" with {', '.join(why)}" if why else ""))


def _outside(snapshot: Snapshot, eng: Engine, requested: list[End], within: np.ndarray) -> set[int]:
    """Canonical nodes a chain kept `within` these rows must avoid; InvalidPath
    when an end or waypoint is itself outside."""
    inside = np.zeros(snapshot.count, dtype=bool)
    inside[within] = True
    for end in requested:
        if isinstance(end, int) and not inside[end]:
            raise InvalidPath(f"image {snapshot.ids[end]} is outside the filter the chain keeps to")
    # A copy inside the filter keeps its content usable, wherever its twins are.
    blocked = np.setdiff1d(eng.canonical[~inside], eng.canonical[inside])
    return set(blocked.tolist())


# ---------------------------------------------------------------- solving


@dataclass(frozen=True)
class _Plan:
    """A checked request, ready to route: rows, graph nodes and attachments."""

    requested: list[End]  # ends and waypoints in order; catalog ones as rows
    stops: list[int]  # their graph nodes (an upload's node is count + its position)
    avoid: set[int]  # canonical nodes the route must not use
    uploads: list[UploadedEnd]
    upload_node: dict[str, int]  # "source" / "target" -> its node
    attachments: list[routing.Attachment]


def _plan(live: Live, eng: Engine, requested: list[End], avoided: list[int]) -> _Plan:
    """Check the stops against each other and attach the uploads (InvalidPath)."""
    snapshot = live.snapshot
    seen = _distinct_stops(snapshot, eng, requested)
    avoid = {int(eng.canonical[i]) for i in avoided}
    if clash := avoid & set(seen):
        raise InvalidPath(
            f"image {snapshot.ids[seen[min(clash)]]} is both avoided and an end or waypoint"
        )
    uploads = [e for e in requested if isinstance(e, UploadedEnd)]
    if len(uploads) == 2 and uploads[0].sha256 == uploads[1].sha256:
        raise InvalidPath("the uploaded source and target are the same image")
    attachments = []
    upload_node: dict[str, int] = {}
    for upload in uploads:
        twin = eng.by_sha.get(upload.sha256)
        attachments.append(_attachment(snapshot, eng, upload, set(seen)))
        if twin is not None:
            avoid.add(twin)  # the upload is shown; its catalog copy must not be too
        upload_node[upload.which] = snapshot.count + len(upload_node)
    stops = [
        upload_node[e.which] if isinstance(e, UploadedEnd) else int(eng.canonical[e])
        for e in requested
    ]
    return _Plan(requested, stops, avoid, uploads, upload_node, attachments)


def solve(live: Live, ends: tuple[End, End], opts: PathOptions) -> PathResponse:
    """Check, route, resample and describe one path request (blocking work).

    Refusals, in this order: UnknownImage (an id), NoPathGraph, InvalidPath
    (contradictory stops or max_steps), NoPath (no route within the constraints).
    """
    started = time.perf_counter()
    stops: tuple[End, ...] = (ends[0], *opts.via, ends[1])
    requested = [live.row_index(e) if isinstance(e, int) else e for e in stops]
    avoided = [live.row_index(i) for i in opts.avoid]
    eng = engine(live)
    if opts.max_steps is not None and opts.max_steps < len(requested):
        raise InvalidPath(
            f"max_steps={opts.max_steps} cannot hold the {len(requested)} ends and waypoints"
        )
    power = opts.smoothness if opts.smoothness is not None else eng.power
    plan = _plan(live, eng, requested, avoided)
    if opts.within is not None:
        plan.avoid.update(_outside(live.snapshot, eng, requested, opts.within))
    try:
        route = eng.finder.route(
            plan.stops,
            power=power,
            avoid=plan.avoid,
            min_similarity=opts.min_similarity,
            attachments=plan.attachments,
        )
    except routing.NoPath as exc:
        raise _no_path(live.snapshot, exc, requested, opts, plan.avoid) from None
    response = _describe(live.snapshot, eng, plan, route, opts, power)
    response.took_ms = round((time.perf_counter() - started) * 1000, 2)
    return response


def _describe(
    snapshot: Snapshot,
    eng: Engine,
    plan: _Plan,
    route: routing.Route,
    opts: PathOptions,
    power: float,
) -> PathResponse:
    """The response for a found route: the chain resampled to max_steps, with its
    step similarities (took_ms is the caller's to fill in)."""
    count = snapshot.count
    chain = list(route.chain)
    for pos, end in zip(route.stops, plan.requested, strict=True):
        if isinstance(end, int):
            chain[pos] = end  # the very id asked for, not its canonical twin
    extra = {plan.upload_node[u.which]: u.vector for u in plan.uploads}
    vectors = np.stack([extra[i] if i >= count else snapshot.vectors[i] for i in chain])
    arc = np.r_[0.0, np.cumsum(np.clip(1.0 - routing.step_similarities(vectors), 0, None))]
    keep = routing.resample(route.stops, arc, opts.max_steps or len(chain))
    sims = routing.step_similarities(vectors[keep])
    stop_pos = set(route.stops)
    which = {plan.upload_node[u.which]: u.which for u in plan.uploads}
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
        took_ms=0.0,
        smoothness=power,
        min_similarity=opts.min_similarity,
        graph_k=eng.k,
        hops=len(chain) - 1,
        resampled=len(keep) < len(chain),
        total_cost=round(route.cost, 9),
        mean_similarity=round(float(sims.mean()), 6) if len(sims) else None,
        weakest_similarity=round(float(sims[weakest]), 6) if weakest is not None else None,
        weakest_step=weakest + 1 if weakest is not None else None,
        uploads={u.which: u.info for u in plan.uploads},
        chain=items,
    )
