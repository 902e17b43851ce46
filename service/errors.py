"""Typed refusals raised by the service's domain code, and the one handler that
turns each into its HTTP answer.

Domain modules (pathfind, uploads, mapdata, state) say *what* is wrong by the
type they raise and know nothing of HTTP; `status_of` is the only place a type
becomes a status code. The body is FastAPI's own error shape, {"detail": ...},
so a client cannot tell these from an HTTPException.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class ServiceError(Exception):
    """A request refused for a reason the domain knows; `detail` is what clients read."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class UnknownImage(ServiceError):
    """No image of the snapshot has this catalog id."""

    def __init__(self, image_id: int) -> None:
        super().__init__(f"no image with id {image_id}")
        self.image_id = image_id


class UploadTooLarge(ServiceError):
    """An upload passed the byte limit (refused before it was all read)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"upload larger than the {limit:,} byte limit")


class UnreadableImage(ServiceError):
    """Uploaded bytes that are not an image we decode: a format we do not accept
    (`unsupported`) or a corrupt, truncated or empty file."""

    def __init__(self, reason: str, *, unsupported: bool) -> None:
        super().__init__(reason)
        self.unsupported = unsupported


class InvalidPath(ServiceError):
    """A path request that contradicts itself (the same image twice, an end also
    avoided, max_steps too small for its stops, ...)."""


class NoPath(ServiceError):
    """No route satisfies the request's constraints."""


class NoPathGraph(ServiceError):
    """The snapshot was built without a path graph."""


class NoConcepts(ServiceError):
    """The snapshot has no concept scores: built before search by word, or with a
    model without a classifier."""

    def __init__(self) -> None:
        super().__init__(
            "this snapshot has no concept scores (it was built before search by word,"
            " or with a model without a classifier): rebuild it with `pixscape index`"
        )


class NoNeighbours(ServiceError):
    """The snapshot has no k-NN lists (built before they were kept)."""

    def __init__(self, snapshot_id: str) -> None:
        super().__init__(
            f"snapshot {snapshot_id} has no k-NN lists (built before they were kept):"
            " rebuild it with `pixscape index`"
        )


class BadFilter(ServiceError):
    """A filter naming a label no image has, or a concept outside the vocabulary."""


class BadSelection(ServiceError):
    """A selection that cannot be acted on: empty, too large, or an export over
    its size limit (`too_large`)."""

    def __init__(self, detail: str, *, too_large: bool = False) -> None:
        super().__init__(detail)
        self.too_large = too_large


def status_of(exc: ServiceError) -> int:
    """The HTTP status of a refusal (the one mapping from types to codes)."""
    match exc:
        case UnknownImage():
            return 404
        case UploadTooLarge():
            return 413
        case UnreadableImage(unsupported=True):
            return 415
        case UnreadableImage():
            return 400
        case BadSelection(too_large=True):
            return 413
        case InvalidPath() | BadFilter() | BadSelection():
            return 422
        case NoPath() | NoPathGraph() | NoConcepts() | NoNeighbours():
            return 409
    raise TypeError(f"no status for {type(exc).__name__}")  # a new type needs its code here


async def _answer(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)  # registered for ServiceError only
    return JSONResponse({"detail": exc.detail}, status_code=status_of(exc))


def add_error_handler(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _answer)
