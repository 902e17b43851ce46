"""create_app(settings) -> FastAPI."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import fastapi_offline
from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from .deps import Pool, require_read
from .errors import add_error_handler
from .middleware import BodyDeadline, BodyLimit, SecurityHeaders
from .routes import admin, duplicates, filters, images, maps, meta, paths, search, selection
from .schemas import ErrorBody
from .settings import Settings
from .state import SnapshotHolder

log = logging.getLogger("pixscape.service")
BUNDLED_WEB = Path(__file__).resolve().parent / "web"
# Swagger UI's files from a wheel: /docs works offline, with no CDN.
DOCS_ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
# Multipart framing around an upload: the body cap is the upload cap plus this.
MULTIPART_SLACK = 64 * 1024
# Answers every read route may give, whatever it does (a route's own entry wins).
READ_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing or wrong API key (PIXSCAPE_READ_KEY is set)"},
    503: {
        "model": ErrorBody,
        "description": "no snapshot is loaded yet, or the server is busy (see Retry-After)",
    },
}


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
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.holder = holder
    app.state.pool = Pool(settings.workers, settings.queue_limit)
    app.state.admin_lock = asyncio.Lock()  # admin calls (add, remove) one at a time
    add_error_handler(app)  # the domain's typed refusals -> their status codes
    app.include_router(meta.public)
    app.include_router(admin.router)
    for module in (search, selection, images, paths, maps, filters, duplicates, meta):
        app.include_router(
            module.router, dependencies=[Depends(require_read)], responses=READ_RESPONSES
        )
    _add_docs(app)
    web_dir = settings.web_dir or BUNDLED_WEB
    if web_dir.is_dir():
        app.mount("/", StaticFiles(directory=web_dir, html=True), name="web")
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, limit=settings.max_upload_bytes + MULTIPART_SLACK)
    app.add_middleware(BodyDeadline, timeout=settings.body_timeout)
    app.add_middleware(SecurityHeaders)
    return app


def _add_docs(app: FastAPI) -> None:
    app.mount("/docs-assets", StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="pixscape API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )
