"""Pathological uploads against a real server: time, CPU and peak memory of each.

Run: python bench/hostile.py [--repeat N]

Indexes images/ (the repository's sample collection) into a temporary data folder,
starts `pixscape serve`, and posts each hostile file to /api/search. Per case it
prints the status, the median wall time over REPEAT posts, the server's CPU seconds
for one post (from /proc/PID/stat), and the server's peak resident memory above its
resting size during that post (VmHWM, reset through /proc/PID/clear_refs before it).
The server runs with glibc returning freed blocks at once (MALLOC_MMAP_THRESHOLD_,
MALLOC_TRIM_THRESHOLD_), so one case's freed memory does not hide the next's peak.
The target: every case within 1 s of CPU and 256 MB of extra memory.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx
from _common import ROOT, emit, median, note, serve

sys.path.insert(0, str(ROOT))
from PIL import Image  # noqa: E402

from tests.test_decode_budget import encode, many_page_tiff, png_claiming  # noqa: E402

MB = 1024 * 1024
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}


def _proc(pid: int, key: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(rf"^{key}:\s+(\d+) kB", status, re.M)
    return int(found.group(1)) * 1024 if found else 0


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _strip(size: tuple[int, int]) -> bytes:
    im = Image.new("RGB", size, (30, 60, 90))
    im.paste((220, 200, 10), (0, 0, max(1, size[0] // 2), size[1]))
    return encode(im, "PNG")


def cases() -> list[tuple[str, bytes]]:
    big = Image.new("RGB", (6000, 4000), (90, 120, 150))
    return [
        ("png strip 12000x1 (the report's case)", _strip((12_000, 1))),
        ("png strip 1x12000", _strip((1, 12_000))),
        ("png 20000x200 (100:1, decoded)", _strip((20_000, 200))),
        ("tiff 30000 pages of 2x2", many_page_tiff(30_000)),
        ("png header claiming 8000x8000 RGBA", png_claiming(8_000, 8_000, colour_type=6)),
        ("png header claiming 100000x100000", png_claiming(100_000, 100_000)),
        ("real png 8000x6000 RGB, flat (bomb-like)", encode(Image.new("RGB", (8000, 6000)), "PNG")),
        ("jpeg 6000x4000 baseline", encode(big, "JPEG", quality=90)),
        ("jpeg 6000x4000 progressive", encode(big, "JPEG", quality=90, progressive=True)),
        ("gif 40 frames 1000x1000", encode(Image.new("P", (1000, 1000)), "GIF", frames=40)),
        ("webp 8000x6000", encode(Image.new("RGB", (8000, 6000), (5, 5, 5)), "WEBP")),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from indexer.build import build

    with tempfile.TemporaryDirectory(prefix="pixscape-hostile-") as tmp:
        data = Path(tmp) / "data"
        note("indexing images/ for the server")
        build(ROOT / "images", data)
        with serve(data, env=MALLOC, timeout=60) as base, httpx.Client(timeout=120) as client:
            url = f"{base}/api/search?k=5"
            sample = next(p for p in sorted((ROOT / "images").rglob("*.png")))
            client.post(url, files={"file": ("warm.png", sample.read_bytes())})
            for label, data_bytes in cases():
                times, status = [], 0
                for i in range(args.repeat):
                    Path(f"/proc/{base.pid}/clear_refs").write_text("5")
                    rest, cpu0 = _proc(base.pid, "VmRSS"), _cpu_s(base.pid)
                    t0 = time.perf_counter()
                    res = client.post(url, files={"file": ("f", data_bytes)})
                    times.append((time.perf_counter() - t0) * 1000)
                    if i == 0:
                        cpu = _cpu_s(base.pid) - cpu0
                        peak = _proc(base.pid, "VmHWM") - rest
                    status = res.status_code
                reason = res.json().get("detail") if status != 200 else None
                emit(
                    "hostile",
                    label,
                    round(median(times), 1),
                    "ms",
                    status=status,
                    bytes=len(data_bytes),
                    cpu_s=round(cpu, 2),
                    peak_extra_mb=round(peak / MB, 1),
                    within_target=cpu <= 1.0 and peak <= 256 * MB,
                    reason=reason if isinstance(reason, str) else None,
                    repeat=args.repeat,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
