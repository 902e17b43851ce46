"""Pure ASGI middleware: security headers, a streaming cap on request bodies, and
admission control for uploads."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The page is plain files from this origin: nothing inline, nothing from elsewhere.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; font-src 'self'; worker-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# Swagger UI (bundled, served from this origin) boots from an inline script.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
DOCS_PATHS = ("/docs", "/redoc")


class SecurityHeaders:
    """nosniff and a Content-Security-Policy on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"].startswith(DOCS_PATHS) else PAGE_CSP
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-content-type-options", b"nosniff"))
                headers.append((b"content-security-policy", csp.encode()))
                headers.append((b"referrer-policy", b"no-referrer"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Starlette answers an unhandled error outside every middleware, so
            # its 500 would lack these headers: answer here. Re-raised: the
            # server still logs it (and Starlette, seeing a response, sends none).
            if not started:
                await send_error(send_with_headers, 500, "internal server error")
            raise


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuses request bodies over `limit` bytes with 413, while they stream.

    A declared Content-Length over the limit is refused before reading; a chunked
    body without one is counted as it arrives and cut off when it passes the limit.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Answer now: frameworks may turn an exception raised while
                    # parsing a body into their own 400.
                    if not started and not refused:
                        refused = True
                        await self._refuse(send)
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 already went out; drop the app's own answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            pass  # answered with 413 above (or the response had already begun)

    async def _refuse(self, send: Send) -> None:
        detail = f"request body larger than the {self.limit:,} byte limit"
        await send_error(send, 413, detail)


async def send_error(send: Send, status: int, detail: str, *extra: tuple[bytes, bytes]) -> None:
    """A JSON error answered before the app has read the request body.

    `connection: close`, because the unread body is still on the wire.
    """
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Gate(Protocol):
    def try_admit(self) -> bool: ...
    def release(self) -> None: ...


class UploadAdmission:
    """Refuses an upload with 503 + Retry-After before reading its body when the
    worker pool is full.

    Checking only when the handler hands work to the pool (as GET routes do) lets a
    crowd of uploads spend the event loop on multipart parsing just to be refused;
    measured with 48 clients on 2 cores, that put the 503's p99 at ~500 ms. Here an
    upload holds a slot from its first byte to its last, so the refusal costs
    nothing and no more than the pool's capacity of bodies sit in memory.
    """

    def __init__(self, app: ASGIApp, gate: Gate, paths: Collection[str]) -> None:
        self.app = app
        self.gate = gate
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        if not self.gate.try_admit():
            detail = "server busy: too many requests in progress, retry shortly"
            await send_error(send, 503, detail, (b"retry-after", b"1"))
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.gate.release()
