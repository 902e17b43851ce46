"""Bytes or a file -> an RGB image, robustly, plus the model's input crop.

Everything a real folder throws at us is handled here once, for the indexer and
the service alike: EXIF orientation, alpha, palette/CMYK/16-bit/greyscale modes,
animations, huge JPEGs (decoded at reduced scale with `draft`), and
decompression bombs. Failures raise `DecodeError` with a reason a person can act on.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Formats accepted, by what the bytes are (PIL's sniffing), never by file name.
ALLOWED_FORMATS = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF"})
MIME_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
}
# Below PIL's own limit (~89 Mpx), so an image we accept never trips its warning.
DEFAULT_MAX_PIXELS = 80_000_000
# Decoded images are never needed larger than this on their short side: the model
# takes 224 px and thumbnails 256 px, so JPEGs are drafted down to it.
WORKING_SHORT_SIDE = 320
_EXIF_ORIENTATION = 0x0112

# PIL only *warns* between its pixel limit and twice it, and would then decode the
# bomb. Make that warning an error for this process, once, at import: a filter set
# per call (catch_warnings) is not thread-safe and decoding runs in threads.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # upright RGB, possibly reduced in size for large JPEGs
    format: str  # what the bytes are: JPEG, PNG, ...
    width: int  # upright size of the original, before any reduction
    height: int


class DecodeError(ValueError):
    """The input is not an image we can read; `unsupported` means a wrong type."""

    def __init__(self, reason: str, *, unsupported: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unsupported = unsupported


def _open(source: bytes | Path) -> Image.Image:
    if isinstance(source, bytes):
        if not source:
            raise DecodeError("empty file (0 bytes)")
        fp: io.BytesIO | Path = io.BytesIO(source)
    else:
        if source.stat().st_size == 0:
            raise DecodeError("empty file (0 bytes)")
        fp = source
    try:
        return Image.open(fp)
    except UnidentifiedImageError as exc:
        raise DecodeError("not a recognised image format", unsupported=True) from exc


def _flatten_alpha(im: Image.Image) -> Image.Image:
    """Composite any transparency on white: stamps and logos are drawn on white."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "PA"):
        im = im.convert("RGBA")
    if im.mode == "RGBA" or im.mode == "RGBa":
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im.getchannel("A"))
        return background
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # 16-bit and float greyscale: rescale the actual range into 8 bits.
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        im = Image.fromarray(((arr - lo) * scale).astype(np.uint8), mode="L")
    im = _flatten_alpha(im)
    if im.mode == "CMYK":
        im = im.convert("RGB")
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im


def decode_image(source: bytes | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Decode `source` into an upright RGB image no larger than needed downstream."""
    try:
        im = _open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"image too large (decompression bomb limit): {exc}") from exc
    except OSError as exc:
        raise DecodeError(f"unreadable image: {exc}") from exc
    try:
        return _decode_opened(im, max_pixels)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"image too large (decompression bomb limit): {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise DecodeError(f"corrupt or truncated image: {exc}") from exc
    finally:
        im.close()


def _decode_opened(im: Image.Image, max_pixels: int) -> Decoded:
    fmt = im.format or "?"
    if fmt not in ALLOWED_FORMATS:
        raise DecodeError(f"unsupported image format {fmt}", unsupported=True)
    width, height = im.size
    if width < 1 or height < 1:
        raise DecodeError("image has no pixels")
    if width * height > max_pixels:
        raise DecodeError(
            f"image too large: {width}x{height} is over the {max_pixels:,} pixel limit"
        )
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)  # first frame of an animation
    if fmt in ("JPEG", "MPO"):
        short = min(width, height)
        if short > WORKING_SHORT_SIDE:
            factor = short / WORKING_SHORT_SIDE
            im.draft("RGB", (int(width / factor), int(height / factor)))
    im.load()
    # EXIF orientations 5-8 are quarter turns: the upright image swaps its axes.
    if im.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
        width, height = height, width
    upright = ImageOps.exif_transpose(im) or im
    return Decoded(_to_rgb(upright), fmt, width, height)


def resize_short_side(im: Image.Image, size: int) -> Image.Image:
    """Scale so the shorter side is `size` (keeping the aspect ratio)."""
    width, height = im.size
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    # reducing_gap: big images are first shrunk by cheap integer reduction.
    return im.resize(new_size, Image.Resampling.BILINEAR, reducing_gap=2.0)


def crop_center(im: Image.Image, size: int) -> np.ndarray:
    """The central `size` x `size` square of an image whose short side is `size`."""
    width, height = im.size
    left, top = (width - size) // 2, (height - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.uint8)


def center_crop(im: Image.Image, size: int) -> np.ndarray:
    """Shorter side to `size`, centre crop to a square: ImageNet's evaluation crop.

    Returns HxWx3 uint8; the model graph itself does the scaling to floats.
    """
    return crop_center(resize_short_side(im, size), size)
