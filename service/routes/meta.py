"""Health and collection statistics."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import HolderDep, LiveDep
from ..schemas import ErrorBody, Health, ModelInfo, Stats

# Health answers without a key (for load balancers and container healthchecks).
public = APIRouter(tags=["meta"])
router = APIRouter(tags=["meta"])


@public.get("/api/health", response_model=Health)
def health(holder: HolderDep) -> Health:
    live = holder.live
    return Health(
        status="ok" if live else "no snapshot", snapshot=live.snapshot.id if live else None
    )


@router.get(
    "/api/stats",
    response_model=Stats,
    responses={503: {"model": ErrorBody, "description": "no snapshot is loaded yet"}},
)
def stats(live: LiveDep) -> Stats:
    m = live.snapshot.manifest
    return Stats(
        snapshot=live.snapshot.id,
        created=m.created,
        count=live.snapshot.count,
        dim=m.dim,
        model=ModelInfo(**m.model.model_dump()),
        index_type=m.index_type,
        build_seconds=m.build.seconds() if m.build else {},
        skipped=m.build.skipped_count if m.build else 0,
    )
