"""Thousands of mutated image files at the upload endpoint: never a 5xx, never a crash."""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from service.app import create_app
from service.settings import Settings

from .conftest import Built, sample_images

EXAMPLES = 2000
ACCEPTED = {200, 400, 413, 415}


def _seeds() -> list[bytes]:
    """Small valid files of every accepted format, from a real image."""
    with Image.open(sample_images()[0]) as src:
        im = src.convert("RGBA")
    im.thumbnail((64, 64))
    rgb = im.convert("RGB")
    out = []
    for image, fmt, kw in [
        (im, "PNG", {}),
        (rgb, "JPEG", {"quality": 80}),
        (rgb, "JPEG", {"quality": 80, "progressive": True}),
        (im, "WEBP", {}),
        (im.convert("P"), "GIF", {"save_all": True, "append_images": [im.convert("P")] * 2}),
        (rgb, "BMP", {}),
        (rgb, "TIFF", {"compression": "tiff_lzw"}),
        (rgb.convert("CMYK"), "JPEG", {}),
        (Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)), "PNG", {}),
    ]:
        buf = io.BytesIO()
        image.save(buf, format=fmt, **kw)
        out.append(buf.getvalue())
    return out


SEEDS = _seeds()


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "duplicate", "zero"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "duplicate":
            data[pos:pos] = data[pos : pos + draw(st.integers(1, 256))]
        else:
            data[pos : pos + draw(st.integers(1, 64))] = b"\0" * 64
    return bytes(data)


@pytest.fixture(scope="module")
def client(built: Built) -> Iterator[TestClient]:
    # raise_server_exceptions: any unhandled error in the app fails the test.
    with TestClient(create_app(Settings(data_dir=built.data_dir))) as c:
        yield c


@settings(
    max_examples=EXAMPLES,
    derandomize=True,  # seeded: the same files every run
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=mutated_files())
def test_mutated_uploads_never_fail_the_server(client: TestClient, data: bytes) -> None:
    res = client.post("/api/search", files={"file": ("fuzz.bin", data)}, params={"k": 3})
    assert res.status_code in ACCEPTED, (res.status_code, res.text)
    body = res.json()
    if res.status_code == 200:
        assert len(body["results"]) == 3
    else:
        assert isinstance(body["detail"], str) and body["detail"]


def test_seed_files_themselves_all_search(client: TestClient) -> None:
    for data in SEEDS:
        assert client.post("/api/search", files={"file": ("s", data)}).status_code == 200
