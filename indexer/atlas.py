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
from bisect import bisect_left
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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


# (file, first id, ids in the sheet, sheet height) -> that sheet's bytes from the
# previous snapshot if none of its ids changed, else None.
KeepSheet = Callable[[str, int, int, int], bytes | None]


@dataclass(frozen=True)
class _Sheet:
    name: str  # atlas/<cell>-<sheet>.<ext>
    first: int  # the id of its first cell
    count: int  # cells (ids) it covers
    height: int  # px: the last sheet is only as tall as its rows
    kept: bytes | None  # the previous snapshot's sheet, where nothing in it changed
    members: list[int]  # the ids present among its cells


def _plan(
    sizes: Sequence[int],
    sheet_size: int,
    span: int,
    present: list[int],
    ext: str,
    keep: KeepSheet | None,
) -> list[tuple[int, list[_Sheet]]]:
    """(cell size, its sheets) for every size: which ids each sheet holds, and
    which sheets the previous snapshot already has."""
    plans = []
    for cell in sizes:
        columns = sheet_size // cell
        per_sheet = columns * columns
        sheets = []
        for sheet_no in range(math.ceil(span / per_sheet)):
            first = sheet_no * per_sheet
            count = min(per_sheet, span - first)
            height = math.ceil(count / columns) * cell
            name = f"atlas/{cell}-{sheet_no}.{ext}"
            kept = keep(name, first, count, height) if keep else None
            lo, hi = bisect_left(present, first), bisect_left(present, first + count)
            sheets.append(_Sheet(name, first, count, height, kept, present[lo:hi]))
        plans.append((cell, sheets))
    return plans


def _paint(sheet: _Sheet, cell: int, sheet_size: int, crops: dict[int, Image.Image]) -> Image.Image:
    """The sheet's image: each member's crop in its cell, the rest background."""
    columns = sheet_size // cell
    out = Image.new("RGB", (sheet_size, sheet.height), BACKGROUND)
    for image_id in sheet.members:
        i = image_id - sheet.first
        out.paste(crops[image_id], ((i % columns) * cell, (i // columns) * cell))
    return out


def build_atlases(
    ids: Sequence[int],
    thumbnail: Callable[[int], bytes],
    *,
    keep: KeepSheet | None = None,
    sizes: Sequence[int] = CELL_SIZES,
    sheet_size: int = SHEET_SIZE,
    fmt: str = "webp",
    workers: int | None = None,
) -> tuple[dict[str, bytes], dict[str, Any]]:
    """(files {"atlas/<cell>-<sheet>.<ext>": bytes, "atlas/index.json": ...}, index).

    Cells go by catalog id, which is stable across snapshots: ids of deleted
    images are blank cells, and an update re-encodes only the sheets whose ids
    changed (`keep` hands back the others), fetching only their `thumbnail(id)`s.
    """
    if fmt not in FORMATS:
        raise ValueError(f"atlas format must be one of {sorted(FORMATS)}")
    sizes = sorted(set(sizes))
    if any(s <= 0 or sheet_size % s for s in sizes):
        raise ValueError(f"cell sizes must divide the sheet size {sheet_size}")
    ext = "jpg" if fmt == "jpeg" else fmt
    span = max(ids) + 1 if len(ids) else 0  # cells: ids 0 .. max id
    workers = workers or os.cpu_count() or 2
    files: dict[str, bytes] = {}
    index: dict[str, Any] = {
        "version": 1,
        "count": span,
        "format": fmt,
        "mime": FORMATS[fmt][1],
        "sheet_size": sheet_size,
        "fit": "cover",
        "rule": "sheet = id // per_sheet; i = id % per_sheet; "
        "x = (i % columns) * cell; y = (i // columns) * cell",
        "sizes": [],
    }
    plans = _plan(sizes, sheet_size, span, sorted(ids), ext, keep)
    wanted = sorted(
        {i for _, sheets in plans for sh in sheets if sh.kept is None for i in sh.members}
    )
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="atlas") as pool:
        # PIL releases the GIL while decoding, resizing and encoding.
        crops = dict(
            zip(
                wanted,
                pool.map(lambda i: _cells(thumbnail(i), sizes), wanted, chunksize=64),
                strict=True,
            )
        )
        for si, (cell, sheets) in enumerate(plans):
            fresh = [sh for sh in sheets if sh.kept is None]
            painted = [
                _paint(sh, cell, sheet_size, {i: crops[i][si] for i in sh.members}) for sh in fresh
            ]
            for sh, blob in zip(fresh, pool.map(lambda im: _encode(im, fmt), painted), strict=True):
                files[sh.name] = blob
            for sh in sheets:
                if sh.kept is not None:
                    files[sh.name] = sh.kept
            columns = sheet_size // cell
            index["sizes"].append(
                {
                    "cell": cell,
                    "columns": columns,
                    "per_sheet": columns * columns,
                    "sheets": [
                        {
                            "file": sh.name,
                            "width": sheet_size,
                            "height": sh.height,
                            "first": sh.first,
                            "count": sh.count,
                            "bytes": len(files[sh.name]),
                        }
                        for sh in sheets
                    ],
                }
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
