"""One image made ready for the model: decoded, cropped, thumbnailed.

Its own small module because the Ray engine's actors import it: they need
decoding and nothing of the finishing steps (FAISS, SciPy) that build.py brings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .decode import crop_center, decode_image, resize_short_side
from .scan import FileEntry
from .thumbs import THUMB_SIZE, make_thumbnail


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
    decoded = decode_image(entry.abs_path, max_pixels=max_pixels)
    resized = resize_short_side(decoded.image, input_size)
    # The thumbnail comes from the model's (smaller) resize when that is still
    # big enough and not upscaled: resampling the original twice costs a fifth
    # of the per-image CPU time.
    shrunk = resized.size[0] < decoded.image.size[0]
    source = resized if shrunk and max(resized.size) >= THUMB_SIZE else decoded.image
    return Prepared(
        sha256=entry.sha256,
        pixels=crop_center(resized, input_size),
        width=decoded.width,
        height=decoded.height,
        format=decoded.format,
        thumbnail=make_thumbnail(source),
    )
