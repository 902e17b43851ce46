"""Thumbnail atlases: sprite sheets for drawing thousands of images at once.

Built from the snapshot's 256 px JPEG thumbnails (bytes in, bytes out; the caller
writes them into the snapshot). Each image gets one square cell per size, centre-
cropped ("cover") so the grid layout tiles without gaps and a cell is always full.
Image `id` sits at a position computed from the id alone, so the index is a rule,
not a table that grows with the collection:

    sheet = id // per_sheet;  i = id % per_sheet
    x = (i % columns) * cell;  y = (i // columns) * cell

WebP, not JPEG: measured on the 1,003 sample images (bench/maps_payload.py), the
sheets are ~32% smaller as WebP q75 than as JPEG q80 (128 px cells: 2.5 MB vs
3.7 MB) and the sheets are what a browser downloads to draw the map. WebP encodes
slower; method 2 costs ~3% in size against method 4 for 2.3x the speed.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image, ImageOps

CELL_SIZES = (32, 128)
SHEET_SIZE = 2048
FORMATS = {"webp": ("WEBP", "image/webp"), "jpeg": ("JPEG", "image/jpeg")}
QUALITY = {"webp": 75, "jpeg": 80}
BACKGROUND = (32, 32, 32)  # what a cell shows where a thumbnail failed to decode


def _cells(data: bytes, sizes: Sequence[int]) -> list[Image.Image]:
    """One thumbnail -> a square crop per cell size (largest decoded once, via draft)."""
    big = max(sizes)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (big, big))  # JPEG: decode at a reduced scale, >= big
            src = ImageOps.fit(im.convert("RGB"), (big, big), Image.Resampling.BICUBIC)
    except (OSError, ValueError):
        src = Image.new("RGB", (big, big), BACKGROUND)
    return [src if s == big else src.resize((s, s), Image.Resampling.BOX) for s in sizes]


def _encode(sheet: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    pil_format, _ = FORMATS[fmt]
    if fmt == "webp":
        sheet.save(buf, format=pil_format, quality=QUALITY[fmt], method=2)
    else:
        sheet.save(buf, format=pil_format, quality=QUALITY[fmt], optimize=True)
    return buf.getvalue()


def build_atlases(
    thumbnails: Sequence[bytes],
    *,
    sizes: Sequence[int] = CELL_SIZES,
    sheet_size: int = SHEET_SIZE,
    fmt: str = "webp",
    workers: int | None = None,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """(files {"atlas/<cell>-<sheet>.<ext>": bytes, "atlas/index.json": ...}, index)."""
    if fmt not in FORMATS:
        raise ValueError(f"atlas format must be one of {sorted(FORMATS)}")
    sizes = sorted(set(sizes))
    if any(s <= 0 or sheet_size % s for s in sizes):
        raise ValueError(f"cell sizes must divide the sheet size {sheet_size}")
    ext = "jpg" if fmt == "jpeg" else fmt
    n = len(thumbnails)
    workers = workers or os.cpu_count() or 2
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="atlas") as pool:
        # PIL releases the GIL while decoding, resizing and encoding.
        crops = list(pool.map(lambda d: _cells(d, sizes), thumbnails, chunksize=64))
        files: dict[str, bytes] = {}
        index: dict[str, Any] = {
            "version": 1,
            "count": n,
            "format": fmt,
            "mime": FORMATS[fmt][1],
            "sheet_size": sheet_size,
            "fit": "cover",
            "rule": "sheet = id // per_sheet; i = id % per_sheet; "
            "x = (i % columns) * cell; y = (i // columns) * cell",
            "sizes": [],
        }
        for si, cell in enumerate(sizes):
            columns = sheet_size // cell
            per_sheet = columns * columns
            jobs = []
            for sheet_no in range(math.ceil(n / per_sheet)):
                first = sheet_no * per_sheet
                count = min(per_sheet, n - first)
                rows = math.ceil(count / columns)
                # The last sheet is only as tall as its rows (small collections).
                sheet = Image.new("RGB", (sheet_size, rows * cell), BACKGROUND)
                for i in range(count):
                    sheet.paste(crops[first + i][si], ((i % columns) * cell, (i // columns) * cell))
                jobs.append((f"atlas/{cell}-{sheet_no}.{ext}", sheet, first, count))
            blobs = pool.map(lambda job: _encode(job[1], fmt), jobs)
            sheets = []
            for (name, sheet, first, count), blob in zip(jobs, blobs, strict=True):
                files[name] = blob
                sheets.append(
                    {
                        "file": name,
                        "width": sheet.width,
                        "height": sheet.height,
                        "first": first,
                        "count": count,
                        "bytes": len(blob),
                    }
                )
            index["sizes"].append(
                {"cell": cell, "columns": columns, "per_sheet": per_sheet, "sheets": sheets}
            )
    files["atlas/index.json"] = json.dumps(index, indent=1).encode()
    return files, index


def locate(index: dict[str, Any], image_id: int, cell: int) -> tuple[int, int, int]:
    """(sheet number, x, y) of an image's cell in the atlas of `cell` px."""
    for size in index["sizes"]:
        if size["cell"] == cell:
            sheet, i = divmod(image_id, size["per_sheet"])
            return sheet, (i % size["columns"]) * cell, (i // size["columns"]) * cell
    raise KeyError(f"no {cell} px atlas")
