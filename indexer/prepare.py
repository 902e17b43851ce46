"""One image made ready for the model: decoded, cropped, thumbnailed.

Its own small module because the Ray engine's actors import it: they need
decoding and nothing of the finishing steps (FAISS, SciPy) that build.py brings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .decode import INDEX_BUDGET_BYTES, center_crop, decode_image
from .scan import FileEntry
from .thumbs import make_thumbnail


@dataclass(frozen=True)
class Prepared:
    sha256: str
    pixels: np.ndarray
    width: int
    height: int
    format: str
    thumbnail: bytes


def prepare(entry: FileEntry, input_size: int, max_pixels: int) -> Prepared:
    """Decode `entry`, crop it to the model's input and make its thumbnail.

    Raises DecodeError (with the reason) for a file that cannot be used.
    """
    decoded = decode_image(entry.abs_path, max_pixels=max_pixels, budget_bytes=INDEX_BUDGET_BYTES)
    # Both come from the decoder's working-size image (short side at most twice
    # WORKING_SHORT_SIDE), so neither resamples a big original.
    return Prepared(
        sha256=entry.sha256,
        pixels=center_crop(decoded.image, input_size),
        width=decoded.width,
        height=decoded.height,
        format=decoded.format,
        thumbnail=make_thumbnail(decoded.image),
    )
