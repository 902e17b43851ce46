"""Annotated dependencies: the live snapshot and the bounded worker pool."""

from __future__ import annotations

import hmac
import urllib.parse
from collections.abc import Callable
from typing import Annotated, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Depends, HTTPException, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

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
    """Runs blocking work (decode, inference, FAISS) off the event loop, bounded.

    At most `size` jobs run and `queue_limit` wait; past that a request is refused
    at once with 503 and Retry-After rather than queueing without end.

    This is the one place requests are admitted. A route reaches `run` only after
    its body has arrived (FastAPI parses it first) and its key was checked (router
    dependencies), so a client that is slow to send, or not allowed, never holds a
    slot; the body's own bounds are middleware.BodyLimit and BodyDeadline.
    """

    def __init__(self, size: int, queue_limit: int) -> None:
        self._limiter = CapacityLimiter(size)
        self._capacity = size + queue_limit
        self._in_flight = 0  # touched only on the event loop thread

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        if self._in_flight >= self._capacity:
            raise HTTPException(
                status_code=503,
                detail="server busy: too many requests in progress, retry shortly",
                headers={"Retry-After": "1"},
            )
        self._in_flight += 1
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._limiter)
        finally:
            self._in_flight -= 1


def get_pool(request: Request) -> Pool:
    pool: Pool = request.app.state.pool
    return pool


KEY_COOKIE = "pixscape_key"
# Methods that change nothing: the only ones a cookie may authorise.
SAFE_METHODS = frozenset({"GET", "HEAD"})
# Declared as security schemes so /openapi.json says how to send a key and /docs
# shows Authorize; auto_error=False because the keys are optional (settings).
API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    scheme_name="apiKey",
    auto_error=False,
    description="PIXSCAPE_READ_KEY for reads (when set), PIXSCAPE_ADMIN_KEY for admin routes",
)
BEARER = HTTPBearer(
    scheme_name="bearer",
    auto_error=False,
    description="the same keys, as Authorization: Bearer KEY",
)
HeaderKey = Annotated[str | None, Security(API_KEY_HEADER)]
BearerKey = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


def cross_site(request: Request, settings: Settings) -> str | None:
    """Why the browser says this request comes from another site, or None.

    Browsers send Sec-Fetch-Site and, on POST and DELETE, Origin; other clients
    (curl, scripts) send neither and are judged by their key alone. An origin the
    CORS setting allows is not foreign.
    """
    if request.headers.get("sec-fetch-site") == "cross-site":
        return "Sec-Fetch-Site: cross-site"
    origin = request.headers.get("origin")
    if origin is None or origin in settings.cors_origins:
        return None
    # Host, not the URL's scheme: behind a TLS proxy the app sees http.
    netloc = urllib.parse.urlsplit(origin).netloc.lower() if origin != "null" else ""
    if not netloc or netloc != request.headers.get("host", "").lower():
        return f"Origin {origin[:100]!r} is not this server"
    return None


def _presented_key(
    request: Request,
    settings: Settings,
    header: str | None,
    bearer: HTTPAuthorizationCredentials | None,
) -> str | None:
    """The key a client sent: X-API-Key, Authorization: Bearer, or (reads only) the
    page's cookie, which an <img> sends where a header cannot be added."""
    if header:
        return header
    if bearer is not None:
        return bearer.credentials.strip()
    if request.method in SAFE_METHODS and cross_site(request, settings) is None:
        cookie = request.cookies.get(KEY_COOKIE)
        # The page percent-encodes it (web/js/key.js): a key may hold ';' or spaces.
        return urllib.parse.unquote(cookie) if cookie else None
    return None


def _key_matches(presented: str | None, *secrets: object) -> bool:
    if presented is None:
        return False
    given = presented.encode()
    # compare_digest against every configured key (no early exit): constant time.
    results = [
        hmac.compare_digest(given, secret.get_secret_value().encode())  # type: ignore[attr-defined]
        for secret in secrets
        if secret is not None
    ]
    return any(results)


def require_read(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    header: HeaderKey,
    bearer: BearerKey,
) -> None:
    if settings.read_key is None:
        return
    presented = _presented_key(request, settings, header, bearer)
    if not _key_matches(presented, settings.read_key, settings.admin_key):
        raise HTTPException(
            status_code=401,
            detail="an API key is required (X-API-Key header or Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def require_admin(
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    header: HeaderKey,
    bearer: BearerKey,
) -> None:
    """Admin routes change the collection: a header key only, never a cookie, and
    never from another site's page (a forged form POST carries no header anyway)."""
    if settings.admin_key is None:
        raise HTTPException(
            status_code=403, detail="admin API is switched off: set PIXSCAPE_ADMIN_KEY to use it"
        )
    if (why := cross_site(request, settings)) is not None:
        raise HTTPException(
            status_code=403, detail=f"cross-site request refused by the admin API ({why})"
        )
    presented = header or (bearer.credentials.strip() if bearer is not None else None)
    if not _key_matches(presented, settings.admin_key):
        raise HTTPException(
            status_code=401,
            detail="the admin key is required (X-API-Key header or Authorization: Bearer;"
            " a cookie is not accepted)",
            headers={"WWW-Authenticate": "Bearer"},
        )


LiveDep = Annotated[Live, Depends(get_live)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
PoolDep = Annotated[Pool, Depends(get_pool)]
HolderDep = Annotated[SnapshotHolder, Depends(get_holder)]
# A catalog id in a route's path; Live.row_index finds it (or answers 404).
ImageId = Annotated[int, Path(ge=0, le=2**31 - 1, description="catalog id")]
