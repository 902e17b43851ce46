"""Bytes or a file -> an RGB image, robustly and within a budget, plus the model's crop.

Everything a real folder (or an attacker) throws at us is handled here once, for the
indexer and the service alike: EXIF orientation, alpha, palette/CMYK/16-bit/greyscale
modes, animations and multi-page files, huge JPEGs, decompression bombs and files
whose shape makes a naive resize explode. Failures raise `DecodeError` with a reason
a person can act on.

The decode budget: every step holds a bounded number of pixels, checked from the
header before anything is allocated.

1. The header: more than `max_pixels`, or an aspect ratio over `MAX_ASPECT_RATIO`,
   is refused.
2. Decoding: JPEGs are decoded at reduced scale (`draft`); what `load()` and the
   steps right after it will allocate at full scale is estimated per format and mode
   and must fit `budget_bytes`.
3. Only the first frame of an animation or multi-page file is read: `n_frames` and
   `is_animated` are never touched, because Pillow walks every page to count them.
4. Right after loading, the image is shrunk by cheap integer reduction to a working
   size (short side under 2 x WORKING_SHORT_SIDE, at most WORKING_MAX_PIXELS); every
   later step (orientation, colour conversion, crop, thumbnail) works on that.
5. The model's crop resizes only the centre square, straight to the model's input:
   nothing scales the whole image up, whatever its shape.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

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
# The file's own pixels. Below PIL's limit (~89 Mpx), so any file PIL warns about
# (or refuses) is one we refuse anyway: its warning never decides anything.
DEFAULT_MAX_PIXELS = 80_000_000
# What decoding may allocate at full scale before the image is shrunk. With the rest
# of a request (the upload, crop, inference) it keeps one under 256 MB. The costs in
# `decode_cost` are measured peaks (tests/test_decode_budget.py checks them); a 12 Mpx
# WebP (16 bytes a pixel) just fits, as does a 48 Mpx RGB PNG.
DEFAULT_BUDGET_BYTES = 192 * 1024 * 1024
# Indexing decodes the owner's own files, one per worker thread: a larger budget, so
# that a 48 Mpx WebP or a big progressive JPEG from a camera is indexed, not skipped.
INDEX_BUDGET_BYTES = 1024 * 1024 * 1024
# Refused rather than letterboxed: the model sees the centre square, which beyond
# 100:1 is under 1% of the image, so its vector would describe a sliver of it. Real
# wide or tall images (panoramas, full-page screenshots, comic strips) stay under it.
MAX_ASPECT_RATIO = 100
# Decoded images are never needed larger than this on their short side: the model
# takes 224 px and thumbnails 256 px. JPEGs are drafted, the rest reduced, to it.
WORKING_SHORT_SIDE = 320
WORKING_MAX_PIXELS = 4_000_000
_EXIF_ORIENTATION = 0x0112
# The EXIF orientation -> the transpose that makes the image upright (as ImageOps).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # upright RGB, at the working size (see the module docstring)
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


def decode_image(
    source: bytes | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
) -> Decoded:
    """Decode `source` into an upright RGB image no larger than needed downstream."""
    try:
        im = _open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # PIL's own limit, above ours: it refuses at open, before we see the size.
        raise DecodeError(f"image too large (decompression bomb limit): {exc}") from exc
    except OSError as exc:
        raise DecodeError(f"unreadable image: {exc}") from exc
    try:
        return _decode_opened(im, max_pixels, budget_bytes)
    except DecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DecodeError(f"image too large (decompression bomb limit): {exc}") from exc
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise DecodeError(f"corrupt or truncated image: {exc}") from exc
    finally:
        im.close()


def decode_cost(im: Image.Image, header_size: tuple[int, int]) -> int:
    """Bytes that loading `im` (as opened, after any draft) and shrinking it allocate.

    Per pixel: PIL's storage for the mode, plus one full-size copy for each step that
    must precede the reduction (palette -> RGB, alpha premultiplied by reduce()), plus
    what the format's own decoder buffers. Measured here, rounded up.
    """
    pixels = im.size[0] * im.size[1]
    mode = im.mode
    if im.format == "WEBP":
        # libwebp decodes into its own RGBA canvas, which Pillow then copies.
        return pixels * 16
    stored = 1 if mode in ("1", "L", "P") else 2 if mode in _SIXTEEN_BIT else 4
    per_pixel = stored
    if mode in ("1", "P", "PA"):
        per_pixel += 4  # converted before reducing: reduce() cannot average indices
    if "A" in mode or "a" in mode or "transparency" in im.info:
        per_pixel += 4  # reduce() premultiplies alpha into a full-size copy
    cost = pixels * per_pixel
    if im.format in ("JPEG", "MPO") and im.info.get("progressive"):
        # A progressive JPEG keeps every DCT coefficient of the full-size image, 2
        # bytes each (one per pixel of each band, less for subsampled chroma),
        # whatever the draft scale.
        layers = getattr(im, "layer", None) or [("", 1, 1, 0)] * len(im.getbands())
        most = max(h * v for _, h, v, _ in layers)
        share = sum(h * v for _, h, v, _ in layers) / most
        cost += math.ceil(header_size[0] * header_size[1] * share * 2)
    return cost


def _decode_opened(im: Image.Image, max_pixels: int, budget_bytes: int) -> Decoded:
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
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise DecodeError(
            f"extreme aspect ratio: {width}x{height} is over {MAX_ASPECT_RATIO}:1, so"
            " its centre square (all the model sees) would be under 1% of it"
        )
    # Open left the first frame current; counting frames (n_frames) would walk them all.
    if fmt in ("JPEG", "MPO"):
        factor = min(width, height) / WORKING_SHORT_SIDE
        if factor > 1:
            im.draft("RGB", (int(width / factor), int(height / factor)))
    cost = decode_cost(im, (width, height))
    if cost > budget_bytes:
        mb = 1024 * 1024
        raise DecodeError(
            f"image too large to decode: {width}x{height} {fmt} ({im.mode}) needs about"
            f" {cost // mb:,} MB, over the {budget_bytes // mb:,} MB decode budget"
        )
    im.load()
    orientation = im.getexif().get(_EXIF_ORIENTATION, 1)
    work = _shrink(im)
    if orientation in _UPRIGHT:
        work = work.transpose(_UPRIGHT[orientation])
        if orientation >= 5:  # quarter turns: the upright image swaps its axes
            width, height = height, width
    rgb = _to_rgb(work)
    if rgb is im:  # nothing converted it: copy, as `im` is closed on return
        rgb = im.copy()
    return Decoded(rgb, fmt, width, height)


def working_factor(width: int, height: int) -> int:
    """The integer reduction that brings a decoded image to the working size."""
    by_side = min(width, height) // WORKING_SHORT_SIDE
    by_pixels = math.ceil(math.sqrt(width * height / WORKING_MAX_PIXELS))
    return max(1, by_side, by_pixels)


def _shrink(im: Image.Image) -> Image.Image:
    """`im` reduced to the working size by block averaging (cheap, no aliasing)."""
    if im.mode == "P" or im.mode == "PA":
        im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
    elif im.mode == "1":
        im = im.convert("L")
    factor = working_factor(*im.size)
    if factor == 1:
        return im
    if im.mode in _SIXTEEN_BIT:  # reduce() has no 16-bit kernel; BOX is the same average
        size = (math.ceil(im.size[0] / factor), math.ceil(im.size[1] / factor))
        return im.resize(size, Image.Resampling.BOX)
    return im.reduce(factor)


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
    if im.mode in (*_SIXTEEN_BIT, "I", "F"):
        # 16-bit and float greyscale: rescale the actual range into 8 bits.
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        im = Image.fromarray(((arr - lo) * scale).astype(np.uint8), mode="L")
    im = _flatten_alpha(im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return im


def center_crop(im: Image.Image, size: int) -> np.ndarray:
    """Shorter side to `size`, centre crop to a square: ImageNet's evaluation crop.

    Only the centre square is resampled (`box`), straight to `size` x `size`: the
    same pixels as resizing the whole image and then cropping, without ever holding
    the whole image scaled (a 1-pixel-tall strip would become gigabytes).
    Returns HxWx3 uint8; the model graph itself does the scaling to floats.
    """
    width, height = im.size
    scale = size / min(width, height)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    sx, sy = width / new_w, height / new_h
    box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
    # reducing_gap: a big image is first shrunk by cheap integer reduction.
    out = im.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=2.0)
    return np.asarray(out, dtype=np.uint8)
