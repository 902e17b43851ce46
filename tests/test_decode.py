"""The decoder on every kind of awkward file a real folder holds."""

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from indexer.decode import DecodeError, center_crop, decode_image

from .conftest import IMAGES, sample_photos


def _encode(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _gradient(w: int = 64, h: int = 48) -> Image.Image:
    x = np.linspace(0, 255, w, dtype=np.uint8)[None, :].repeat(h, 0)
    return Image.fromarray(np.stack([x, x, 255 - x], -1), "RGB")


def test_exif_orientation_is_applied() -> None:
    im = Image.new("RGB", (80, 40), (200, 0, 0))
    im.paste((0, 0, 200), (0, 0, 10, 40))  # a blue stripe on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    decoded = decode_image(_encode(im, "JPEG", exif=exif.tobytes(), quality=95))
    assert decoded.image.size == (40, 80)
    assert (decoded.width, decoded.height) == (40, 80)
    top = np.asarray(decoded.image)[:5].mean(axis=(0, 1))
    assert top[2] > 150 and top[0] < 80  # the stripe is now on top


def test_alpha_is_composited_on_white() -> None:
    im = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    im.putpixel((0, 0), (255, 0, 0, 255))
    arr = np.asarray(decode_image(_encode(im, "PNG")).image)
    assert tuple(arr[5, 5]) == (255, 255, 255)
    assert tuple(arr[0, 0]) == (255, 0, 0)


def test_palette_with_transparency() -> None:
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    im.putpixel((1, 1), 1)
    arr = np.asarray(decode_image(_encode(im, "PNG", transparency=0)).image)
    assert tuple(arr[0, 0]) == (255, 255, 255)
    assert tuple(arr[1, 1]) == (10, 200, 10)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk(fmt: str) -> None:
    im = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # red
    decoded = decode_image(_encode(im, fmt))
    assert decoded.image.mode == "RGB"
    r, g, b = np.asarray(decoded.image).mean(axis=(0, 1))
    assert r > 200 and g < 60 and b < 60


def test_16_bit_greyscale_keeps_its_range() -> None:
    arr = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    decoded = decode_image(_encode(Image.fromarray(arr), "PNG"))
    out = np.asarray(decoded.image)
    assert decoded.image.mode == "RGB"
    assert out.min() == 0 and out.max() == 255


def test_greyscale_and_bmp_and_webp() -> None:
    for im, fmt in [
        (Image.new("L", (9, 9), 128), "PNG"),
        (_gradient(), "BMP"),
        (_gradient(), "WEBP"),
    ]:
        decoded = decode_image(_encode(im, fmt))
        assert decoded.image.mode == "RGB" and decoded.format == fmt


def test_first_frame_of_an_animation() -> None:
    frames = [Image.new("RGB", (20, 20), c) for c in [(255, 0, 0), (0, 0, 255)]]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    r, g, b = np.asarray(decode_image(data).image).mean(axis=(0, 1))
    assert r > 200 and b < 50


def test_big_jpeg_is_drafted_but_reports_its_real_size() -> None:
    big = _gradient(4000, 3000)
    decoded = decode_image(_encode(big, "JPEG", quality=80))
    assert (decoded.width, decoded.height) == (4000, 3000)
    assert max(decoded.image.size) <= 1000  # decoded at reduced scale
    assert min(decoded.image.size) >= 224


def test_decompression_bomb_is_refused_from_the_header() -> None:
    # A valid PNG header claiming 100000 x 100000 pixels, with almost no data.
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")
    with pytest.raises(DecodeError, match="too large"):
        decode_image(png)
    with pytest.raises(DecodeError, match="too large"):
        decode_image(_encode(_gradient(300, 300), "PNG"), max_pixels=50_000)


@pytest.mark.parametrize(
    "data, unsupported",
    [
        (b"", False),
        (b"\x00" * 100, True),
        (bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)), True),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', True),
        (b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", True),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", True),
    ],
    ids=["empty", "zeros", "random", "svg", "pdf", "eps"],
)
def test_non_images_are_refused(data: bytes, unsupported: bool) -> None:
    with pytest.raises(DecodeError) as err:
        decode_image(data)
    assert err.value.unsupported is unsupported
    assert err.value.reason


def test_truncated_files_are_refused() -> None:
    png = (IMAGES / "birds").glob("*.png").__next__().read_bytes()
    with pytest.raises(DecodeError, match="corrupt or truncated|unreadable"):
        decode_image(png[: len(png) // 2])


def test_truncated_jpeg_is_refused() -> None:
    jpeg = sample_photos(1)[0].read_bytes()
    with pytest.raises(DecodeError):
        decode_image(jpeg[:2000])


def test_center_crop_is_square_and_centred(tmp_path: Path) -> None:
    im = Image.new("RGB", (300, 100), (0, 0, 0))
    im.paste((255, 255, 255), (100, 0, 200, 100))  # the middle third is white
    out = center_crop(im, 50)
    assert out.shape == (50, 50, 3) and out.dtype == np.uint8
    assert out.mean() > 250
