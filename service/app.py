"""create_app(settings) -> FastAPI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .deps import Pool
from .routes import images, meta, search
from .settings import Settings
from .state import SnapshotHolder

log = logging.getLogger("pixscape.service")
BUNDLED_WEB = Path(__file__).resolve().parent.parent / "web"


class SecurityHeaders:
    """Adds headers every response should carry (pure ASGI: no per-request task)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _watch(holder: SnapshotHolder, interval: float) -> None:
    """Poll CURRENT and swap in a newly published snapshot."""
    while True:
        await asyncio.sleep(interval)
        try:
            await anyio.to_thread.run_sync(holder.refresh)
        except Exception:  # a reload must never kill the watcher; log and go on
            log.exception("snapshot reload failed")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    holder = SnapshotHolder(settings.data_dir, settings.inference_threads)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(holder.refresh)
        if holder.live is None:
            log.warning("no snapshot yet in %s: %s", settings.data_dir, holder.error or "none")
        watcher = asyncio.create_task(_watch(holder, settings.reload_interval_s))
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    app = FastAPI(
        title="pixscape",
        version="0.1.0",
        summary="Search a folder of images by example.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.pool = Pool(settings.workers)
    for module in (search, images, meta):
        app.include_router(module.router)
    web_dir = settings.web_dir or BUNDLED_WEB
    if web_dir.is_dir():
        app.mount("/", StaticFiles(directory=web_dir, html=True), name="web")
    app.add_middleware(SecurityHeaders)
    return app
