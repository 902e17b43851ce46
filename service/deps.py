"""Annotated dependencies: the live snapshot and the bounded worker pool."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, HTTPException, Request

from indexer.snapshot import CatalogRow

from .settings import Settings
from .state import Live, SnapshotHolder

T = TypeVar("T")


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_holder(request: Request) -> SnapshotHolder:
    holder: SnapshotHolder = request.app.state.holder
    return holder


def get_live(holder: Annotated[SnapshotHolder, Depends(get_holder)]) -> Live:
    # One reference per request: a reload swaps holder.live, never this object.
    live = holder.live
    if live is None:
        reason = holder.error or "no snapshot published yet: run `pixscape index`"
        raise HTTPException(status_code=503, detail=reason, headers={"Retry-After": "5"})
    return live


class Pool:
    """Runs blocking work (decode, inference, FAISS) off the event loop, bounded."""

    def __init__(self, size: int) -> None:
        self._limiter = CapacityLimiter(size)

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)


def get_pool(request: Request) -> Pool:
    pool: Pool = request.app.state.pool
    return pool


def image_row(live: Live, image_id: int) -> CatalogRow:
    if not 0 <= image_id < live.snapshot.count:
        raise HTTPException(status_code=404, detail=f"no image with id {image_id}")
    return live.snapshot.rows[image_id]


LiveDep = Annotated[Live, Depends(get_live)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[Pool, Depends(get_pool)]
HolderDep = Annotated[SnapshotHolder, Depends(get_holder)]
