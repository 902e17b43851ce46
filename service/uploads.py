"""Uploaded images: reading them within the size limit, decoding, embedding.

Every route that takes an image file (search, path ends, admin add) goes through
here, so a refusal reads and is coded the same everywhere (errors.py).
"""

from __future__ import annotations

import numpy as np
from fastapi import UploadFile

from indexer.decode import Decoded, DecodeError, center_crop, decode_image

from .errors import UnreadableImage, UploadTooLarge
from .schemas import QueryInfo
from .state import Live

_UPLOAD_CHUNK = 1 << 16


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The upload's bytes, refusing (UploadTooLarge) as soon as they pass `limit`."""
    chunks, total = [], 0
    while chunk := await upload.read(_UPLOAD_CHUNK):
        total += len(chunk)
        if total > limit:
            raise UploadTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def decode_upload(data: bytes, max_pixels: int, name: str | None = None) -> Decoded:
    """Decode uploaded bytes as the indexer does; UnreadableImage if they are not an
    image we accept (`name`, when given, starts the message: which file of several)."""
    try:
        return decode_image(data, max_pixels=max_pixels)
    except DecodeError as exc:
        reason = exc.reason if name is None else f"{name}: {exc.reason}"
        raise UnreadableImage(reason, unsupported=exc.unsupported) from exc


def embed_query(live: Live, data: bytes, max_pixels: int) -> tuple[np.ndarray, QueryInfo]:
    """Decode and embed one uploaded image exactly as the indexer did its files."""
    decoded = decode_upload(data, max_pixels)
    pixels = center_crop(decoded.image, live.embedder.input_size)
    vector = live.embedder.embed(pixels[None])[0]
    return vector, QueryInfo(width=decoded.width, height=decoded.height, format=decoded.format)
