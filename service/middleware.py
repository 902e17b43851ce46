"""Pure ASGI middleware: security headers, and bounds on receiving a request body
(a size cap and a deadline) whose refusals the client can read.

Admission to the worker pool is not here: see deps.Pool.
"""

from __future__ import annotations

import json

import anyio
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


class _Exchange:
    """One request's response side, so that a middleware can answer from inside
    `receive` (frameworks turn an exception raised while they parse a body into their
    own 400, which must not reach the client after the real answer)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False
        self.answered = False

    async def send(self, message: Message) -> None:
        if self.answered:
            return  # our answer already went out; drop the app's own
        self.started = self.started or message["type"] == "http.response.start"
        await self._send(message)

    async def answer(
        self, status: int, detail: str, *extra: tuple[bytes, bytes], close: bool
    ) -> None:
        """Send this error unless a response has begun (then the app's stands)."""
        if not self.started and not self.answered:
            self.answered = True
            await send_error(self._send, status, detail, *extra, close=close)


class _BodyTimedOut(Exception):
    pass


class BodyDeadline:
    """Gives a request `timeout` seconds in all, from its headers, to send its body;
    then it is answered 408 and its connection closed.

    Without it a client that sends headers and then a byte a second keeps its
    connection, its buffers and the coroutine reading its body for as long as it
    likes, and enough such clients starve everyone else. Only reading the body is
    timed: once it is complete, waiting on `receive` (for a disconnect) is not.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = anyio.current_time() + self.timeout
        exchange = _Exchange(send)
        complete = False

        async def timed_receive() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            message: Message | None = None
            left = deadline - anyio.current_time()
            if left > 0:
                with anyio.move_on_after(left):
                    message = await receive()
            if message is None:
                detail = f"request body not received within {self.timeout:g} s"
                await exchange.answer(408, detail, close=True)
                raise _BodyTimedOut
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        try:
            await self.app(scope, timed_receive, exchange.send)
        except _BodyTimedOut:
            pass  # answered with 408 above (or the response had already begun)


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuses request bodies over `limit` bytes with a 413 the client can read.

    A declared Content-Length over the limit is refused before the app sees it; a
    chunked body is counted as it arrives and refused when it passes the limit.

    Closing a connection while its request body is still arriving makes the kernel
    answer the unread bytes with a reset, and a client that is still sending then
    often sees ECONNRESET instead of the 413. So the rest of the body is first read
    and discarded (twice the limit in all, at most, and within BodyDeadline's
    deadline) and the 413 goes out on a connection that stays usable. A body that
    declares or turns out to be larger than that, or one the client holds back
    (Expect: 100-continue), gets its 413 and then the connection is closed:
    reading gigabytes to be polite is not a bounded cost.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.detail = f"request body larger than the {limit:,} byte limit"
        self.discard_budget = 2 * limit  # bytes read in all, at most, from a refused body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", []))
        exchange = _Exchange(send)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            waiting = headers.get(b"expect", b"").lower() == b"100-continue"
            read_all = not waiting and int(declared) <= self.discard_budget
            read_all = read_all and await self._discard(receive, self.discard_budget)
            await exchange.answer(413, self.detail, close=not read_all)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    read_all = not message.get("more_body", False) or await self._discard(
                        receive, self.discard_budget - received
                    )
                    await exchange.answer(413, self.detail, close=not read_all)
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, exchange.send)
        except _BodyTooLarge:
            pass  # answered with 413 above (or the response had already begun)

    @staticmethod
    async def _discard(receive: Receive, budget: int) -> bool:
        """Read the rest of the body and drop it: True if it ended within `budget`
        bytes, False if it ran past them or the client went away."""
        while budget >= 0:
            message = await receive()
            if message["type"] != "http.request":
                return False
            budget -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return budget >= 0
        return False


async def send_error(
    send: Send, status: int, detail: str, *extra: tuple[bytes, bytes], close: bool = True
) -> None:
    """A JSON error answered by middleware. `close` when the request body may still
    be on the wire: the connection cannot carry another request after it."""
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
