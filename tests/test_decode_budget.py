"""The decode budget: no file, whatever its header claims, costs more than a bound.

Pillow allocates image memory in C, where tracemalloc cannot see it, so each decode
runs in a worker process that reads its own peak RSS (VmHWM, reset before each file
through /proc/self/clear_refs) and runs under an address-space limit, so that a
regression fails here instead of taking the machine's memory. The work a decode does
is bounded by counting the Python calls it makes (a count, not a time): walking the
pages of a multi-page file costs thousands per page.
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from indexer.decode import DEFAULT_BUDGET_BYTES, DecodeError, center_crop, decode_image
from service.app import create_app
from service.settings import Settings

from .conftest import Built

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
# The target: any upload within the size limit costs at most 256 MB of extra memory.
PEAK_LIMIT = 256 * MB
# The worker's heap may grow this much beyond its idle size before allocations fail.
WORKER_HEADROOM = 1024 * MB
# A decode, crop and thumbnail of one image make a few hundred Python calls; a walk
# over the pages of a file, or any per-pixel Python loop, makes far more.
CALL_LIMIT = 5_000
MODEL_SIZE = 224


# --- the worker: one process, many decodes --------------------------------------------


class _TooManyCalls(BaseException):
    """Raised from the profiler: a BaseException, so no `except Exception` swallows it."""


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        found = re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M)
    assert found, key
    return int(found.group(1)) * 1024


def _release() -> None:
    """Hand freed heap back to the system, so the next peak starts from what is live."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)


def _measure(work: Any) -> dict[str, Any]:
    """Run `work()`, returning its outcome, peak RSS above the start, and Python calls."""
    calls = 0

    def count(frame: object, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call":
            calls += 1
            if calls > CALL_LIMIT:
                raise _TooManyCalls

    _release()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    start = _status("VmRSS")
    sys.setprofile(count)
    try:
        outcome = work()
    except _TooManyCalls:
        outcome = "too many calls"
    except MemoryError:
        outcome = "out of memory"
    finally:
        sys.setprofile(None)
    return {"outcome": outcome, "peak": _status("VmHWM") - start, "calls": calls}


def worker(module: str) -> None:
    """Serve decode requests, one JSON line in and out, using `module`'s decoder.

    `module` is indexer.decode normally; any module with the same names (an older
    decode.py copied aside) can be measured the same way.
    """
    import importlib
    import resource

    from indexer.thumbs import make_thumbnail

    mod = importlib.import_module(module)
    # Warm up: Pillow imports its plugins (thousands of calls) on first use.
    for fmt, mode in [
        ("PNG", "RGB"),
        ("JPEG", "RGB"),
        ("TIFF", "RGB"),
        ("WEBP", "RGB"),
        ("GIF", "P"),
        ("BMP", "RGB"),
    ]:
        data = encode(Image.new(mode, (300, 300)), fmt)
        mod.center_crop(mod.decode_image(data).image, MODEL_SIZE)
        make_thumbnail(mod.decode_image(data).image)
    limit = _status("VmSize") + WORKER_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def decode(path: str) -> str:
        data = Path(path).read_bytes()
        try:
            decoded = mod.decode_image(data)
        except mod.DecodeError as exc:
            return f"refused: {exc.reason}"
        pixels = mod.center_crop(decoded.image, MODEL_SIZE)
        make_thumbnail(decoded.image)
        assert pixels.shape == (MODEL_SIZE, MODEL_SIZE, 3)
        return "ok"

    def crop(size: list[int]) -> str:
        mod.center_crop(Image.new("RGB", (size[0], size[1]), (9, 9, 9)), MODEL_SIZE)
        return "ok"

    for line in sys.stdin:
        request = json.loads(line)
        if "file" in request:
            result = _measure(lambda path=request["file"]: decode(path))
        else:
            result = _measure(lambda size=request["crop"]: crop(size))
        print(json.dumps(result), flush=True)


class Probe:
    def __init__(self, module: str = "indexer.decode") -> None:
        code = f"from tests.test_decode_budget import worker; worker({module!r})"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]),
                # Every big block from mmap, returned on free: otherwise glibc keeps
                # freed image memory in its heap and the next decode's peak hides in it.
                "MALLOC_MMAP_THRESHOLD_": "65536",
            },
        )

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        stdin, stdout = self.proc.stdin, self.proc.stdout
        assert stdin is not None and stdout is not None
        stdin.write(json.dumps(request) + "\n")
        stdin.flush()
        line = stdout.readline()
        assert line, f"the decode worker died (exit {self.proc.wait()})"
        return dict(json.loads(line))

    def decode(self, path: Path) -> dict[str, Any]:
        return self._ask({"file": str(path)})

    def crop(self, width: int, height: int) -> dict[str, Any]:
        return self._ask({"crop": [width, height]})

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def probe() -> Iterator[Probe]:
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("needs Linux's /proc/self/clear_refs to measure peak memory")
    p = Probe()
    yield p
    p.close()


def within_budget(result: dict[str, Any]) -> bool:
    """The outcome is a decode or a refusal, at bounded memory and work."""
    done = result["outcome"] == "ok" or result["outcome"].startswith("refused: ")
    return done and result["peak"] <= PEAK_LIMIT and result["calls"] <= CALL_LIMIT


# --- files ---------------------------------------------------------------------------


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_claiming(width: int, height: int, colour_type: int = 2) -> bytes:
    """A valid PNG header claiming `width` x `height`, with one tiny row of data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def many_page_tiff(pages: int, size: int = 2) -> bytes:
    """A little-endian TIFF of `pages` greyscale `size` x `size` pages, written directly
    (Pillow's writer takes minutes for 30,000 pages); every page shares one strip."""
    tags = 8
    ifd_size = 2 + tags * 12 + 4
    strip_at = 8
    first_ifd = strip_at + size * size
    out = io.BytesIO()
    out.write(b"II*\x00" + struct.pack("<I", first_ifd))
    out.write(bytes(range(0, 256, 256 // (size * size)))[: size * size])
    for page in range(pages):
        here = first_ifd + page * ifd_size
        nxt = here + ifd_size if page + 1 < pages else 0
        entries = [
            (256, 3, 1, size),  # width
            (257, 3, 1, size),  # height
            (258, 3, 1, 8),  # bits per sample
            (259, 3, 1, 1),  # no compression
            (262, 3, 1, 1),  # black is zero
            (273, 4, 1, strip_at),  # strip offset
            (278, 3, 1, size),  # rows per strip
            (279, 4, 1, size * size),  # strip byte count
        ]
        out.write(struct.pack("<H", tags))
        for tag, kind, count, value in entries:
            out.write(struct.pack("<HHII", tag, kind, count, value))
        out.write(struct.pack("<I", nxt))
    return out.getvalue()


def write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def encode(im: Image.Image, fmt: str, frames: int = 1, **kw: Any) -> bytes:
    buf = io.BytesIO()
    if frames > 1:
        # Frames that differ (point() cannot shift every mode: I;16 has no modulo).
        turns = [Image.Transpose.ROTATE_180, Image.Transpose.FLIP_LEFT_RIGHT]
        more = [im.transpose(turns[i % 2]) for i in range(1, frames)]
        kw |= {"save_all": True, "append_images": more}
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


# --- the property: any small file, any shape, mode, format and frame count ----------

# What each format can hold (Pillow's writers): a file is made only where it can be.
MODES = {
    "PNG": ["L", "RGB", "RGBA", "P", "I;16"],
    "JPEG": ["L", "RGB", "CMYK"],
    "TIFF": ["L", "RGB", "RGBA", "P", "I;16", "CMYK"],
    "GIF": ["L", "P", "RGB"],
    "WEBP": ["RGB", "RGBA"],
}
MULTI_FRAME = {"TIFF", "GIF"}
SIDE = st.integers(1, 100_000)
# Real pixels are written up to this many (so the property runs in seconds); beyond
# it the file is a PNG whose header claims the size over one row of data.
WRITTEN_PIXELS = 400_000


@st.composite
def hostile_files(draw: st.DrawFn) -> tuple[str, bytes]:
    width, height = draw(SIDE), draw(SIDE)
    fmt = draw(st.sampled_from(sorted(MODES)))
    limit = {"WEBP": 16_383, "JPEG": 65_500, "GIF": 65_535}.get(fmt)  # what the format can hold
    if limit:
        width, height = min(width, limit), min(height, limit)
    if width * height > WRITTEN_PIXELS:
        return f"PNG header claiming {width}x{height}", png_claiming(width, height)
    mode = draw(st.sampled_from(MODES[fmt]))
    frames = draw(st.integers(1, 40)) if fmt in MULTI_FRAME else 1
    bands = len(Image.new(mode, (1, 1)).getbands())
    im = Image.new(mode, (width, height), 0 if bands == 1 else (0,) * bands)
    light = 200 if bands == 1 else (200,) * bands
    im.paste(light, (0, 0, max(1, width // 3), max(1, height // 2)))
    label = f"{frames}-frame {width}x{height} {mode} {fmt}"
    return label, encode(im, fmt, frames=frames)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=hostile_files())
def test_any_file_decodes_or_is_refused_within_the_budget(
    case: tuple[str, bytes], probe: Probe, tmp_path: Path
) -> None:
    label, data = case
    result = probe.decode(write(tmp_path, "case", data))
    assert within_budget(result), f"{label}: {result}"


# --- the cases that were found, one each --------------------------------------------


@pytest.mark.parametrize(
    "size",
    [(12_000, 1), (1, 12_000), (20_000, 200), (300, 30_000)],
    ids=["12000x1", "1x12000", "20000x200 (100:1, kept)", "300x30000 (100:1, kept)"],
)
def test_a_strip_costs_no_more_than_a_square(
    size: tuple[int, int], probe: Probe, tmp_path: Path
) -> None:
    # Real, whole files of a few hundred bytes to a few kB: scaling the short side up
    # to 224 first would allocate (long / short) x 224 x 224 x 3 bytes (GBs).
    im = Image.new("RGB", size, (30, 60, 90))
    im.paste((220, 200, 10), (0, 0, size[0] // 2, size[1]))
    result = probe.decode(write(tmp_path, "strip.png", encode(im, "PNG")))
    assert within_budget(result), f"{size}: {result}"


def test_extreme_aspect_ratio_is_refused_with_its_reason() -> None:
    with pytest.raises(DecodeError, match="aspect ratio: 12000x1"):
        decode_image(png_claiming(12_000, 1))


def test_the_model_crop_of_any_shape_is_bounded(probe: Probe) -> None:
    for size in [(100_000, 1), (1, 100_000), (50_000, 3), (224, 224)]:
        result = probe.crop(*size)
        assert within_budget(result), f"crop of {size}: {result}"


def test_a_30000_page_tiff_reads_only_its_first_page(probe: Probe, tmp_path: Path) -> None:
    path = write(tmp_path, "pages.tif", many_page_tiff(30_000))
    result = probe.decode(path)
    assert result["outcome"] == "ok" and within_budget(result), result


def test_a_header_over_the_budget_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    # 8,000 x 8,000 RGBA: under the pixel limit, but 64 Mpx x 12 bytes is over budget.
    with pytest.raises(DecodeError, match="decode budget"):
        decode_image(png_claiming(8_000, 8_000, colour_type=6))
    # The same shape is fine with a budget that allows it (the check is the budget).
    small = DEFAULT_BUDGET_BYTES * 4
    with pytest.raises(DecodeError, match="truncated|broken|unreadable|corrupt"):
        decode_image(png_claiming(8_000, 8_000, colour_type=6), budget_bytes=small)


def test_the_crop_is_the_resize_then_crop_it_replaces() -> None:
    rng = np.random.default_rng(7)
    for w, h in [(640, 480), (300, 900), (224, 224), (1000, 230)]:
        im = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB")
        scale = 224 / min(w, h)
        big = im.resize(
            (max(224, round(w * scale)), max(224, round(h * scale))),
            Image.Resampling.BILINEAR,
            reducing_gap=2.0,
        )
        left, top = (big.size[0] - 224) // 2, (big.size[1] - 224) // 2
        want = np.asarray(big.crop((left, top, left + 224, top + 224)), dtype=np.int16)
        got = center_crop(im, 224).astype(np.int16)
        assert got.shape == (224, 224, 3)
        # Same area, resampled once instead of twice: the means agree closely.
        assert abs(got.mean() - want.mean()) < 1.0
        assert np.abs(got - want).mean() < 40, (w, h)


@pytest.fixture(scope="module")
def client(built: Built) -> Iterator[TestClient]:
    settings = Settings(data_dir=built.data_dir, admin_key="adm")
    with TestClient(create_app(settings)) as c:
        yield c


@pytest.mark.parametrize(
    "name, data, reason",
    [
        ("strip.png", png_claiming(12_000, 1), "aspect ratio"),
        ("bomb.png", png_claiming(8_000, 8_000, colour_type=6), "decode budget"),
    ],
)
def test_service_refuses_with_the_reason(
    client: TestClient, name: str, data: bytes, reason: str
) -> None:
    res = client.post("/api/search", files={"file": (name, data, "image/png")})
    assert res.status_code == 400 and reason in json.dumps(res.json()), res.text
    res = client.post(
        "/api/images",
        files=[("files", (name, data, "image/png"))],
        headers={"X-API-Key": "adm"},
    )
    # Admin add refuses the whole batch, naming the file; nothing is stored.
    assert res.status_code == 400, res.text
    assert name in res.text and reason in res.text


def test_service_answers_a_many_page_tiff(client: TestClient) -> None:
    res = client.post(
        "/api/search?k=3", files={"file": ("p.tif", many_page_tiff(30_000), "image/tiff")}
    )
    assert res.status_code == 200 and len(res.json()["results"]) == 3, res.text
