"""The map page in headless Chromium: time to first paint and frames per second
while panning, for synthetic collections of 10k and 100k images.

A synthetic snapshot (clustered 2D positions for a "umap" and a "grid" layout,
tiny coloured thumbnails, a real 32 px atlas built by indexer.atlas, the real
ONNX model so the service opens it) is written with indexer.snapshot and cached
under --cache, then served by the real app under uvicorn. Chromium is Debian's
/usr/bin/chromium with --disable-gpu, so WebGL runs on SwiftShader (the CPU):
a machine with a GPU draws faster than these figures.

    python bench/web_fps.py [--sizes 10000,100000] [--seconds 4] [--cache DIR]

Figures per size, renderer and view (the full map, and zoomed in 8x): first_paint_ms
(navigation start to the first frame with every point drawn, from the page's
performance mark), sheets_ms (to the last atlas sheet drawn; at 100k the full view
draws coloured squares and loads sheets only once zoomed in), pan_fps and
pan_frame_p95_ms (a drag that moves every frame for --seconds; headless Chromium
caps frames at 60/s). `--renderers auto,webgl` measures what the page picks by itself
(Canvas2D where WebGL is software-emulated, as here) and WebGL forced.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shutil
import tempfile
import threading
import time
from pathlib import Path

import faiss
import numpy as np
from _common import HOST, emit, free_port, note, percentile
from PIL import Image

from indexer.atlas import build_atlases
from indexer.catalog import CatalogRow
from indexer.manifest import CollectionEntry, Contents, ModelEntry
from indexer.models import DEFAULT_MODEL, ensure_onnx, get_spec
from indexer.snapshot import publish, write_snapshot

BENCH = "web_fps"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
DIM = 16  # the map needs no real vectors; search is not measured here


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _palette(k: int, rng: np.random.Generator) -> list[bytes]:
    out = []
    for _ in range(k):
        a, b = rng.integers(30, 230, size=(2, 3))
        ramp = np.linspace(0, 1, 48)[:, None, None]
        px = (a * (1 - ramp) + b * ramp).astype(np.uint8) * np.ones((48, 48, 3), np.uint8)
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, format="JPEG", quality=70)
        out.append(buf.getvalue())
    return out


def build_synthetic(data: Path, n: int, models: Path) -> None:
    """A published snapshot of n synthetic images under `data`."""
    rng = np.random.default_rng(n)
    k = max(8, n // 1500)
    centres = rng.uniform(0, 1, size=(k, 2))
    cluster = rng.integers(0, k, size=n).astype(np.int16)
    pos = centres[cluster] + rng.normal(0, 0.035, size=(n, 2))
    pos = (pos - pos.min(0)) / (pos.max(0) - pos.min(0)).max()  # one scale for both axes
    pos = pos.astype(np.float32)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    order = np.lexsort((pos[:, 0], cluster))
    grid = np.empty((n, 2), np.float32)
    side = max(cols, rows)
    grid[order, 0] = (np.arange(n) % cols + 0.5) / side
    grid[order, 1] = (np.arange(n) // cols + 0.5) / side

    palette = _palette(64, rng)
    thumbs = [palette[(int(c) * 7 + i % 5) % 64] for i, c in enumerate(cluster)]
    atlas_files, _ = build_atlases(range(len(thumbs)), thumbs.__getitem__, sizes=(32,))
    rows_ = [
        CatalogRow(
            i,
            f"c{cluster[i]:03d}/img{i:06d}.jpg",
            f"{i:064x}",
            1000,
            48,
            48,
            "JPEG",
            f"c{cluster[i]:03d}",
        )
        for i in range(n)
    ]
    vectors = rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(DIM)
    index.add(vectors)
    clusters = [
        {
            "id": c,
            "size": int((cluster == c).sum()),
            "representative": int(np.flatnonzero(cluster == c)[0]),
            "label": f"c{c:03d}",
            "label_share": 1.0,
            "centers": {
                "umap": [float(x) for x in np.median(pos[cluster == c], 0)],
                "grid": [float(x) for x in np.median(grid[cluster == c], 0)],
            },
        }
        for c in range(k)
        if (cluster == c).any()
    ]
    maps_json = {
        "layouts": {
            "umap": {"params": {"synthetic": True}, "quality": None},
            "grid": {
                "params": {"synthetic": True},
                "quality": None,
                "grid": {"cols": cols, "rows": rows, "cell": 1 / side},
            },
        },
        "clusters": clusters,
    }
    model_path, fingerprint = ensure_onnx(get_spec(DEFAULT_MODEL), models)
    snap = write_snapshot(
        data,
        rows=rows_,
        vectors=vectors,
        index_bytes=faiss.serialize_index(index).tobytes(),
        model_path=model_path,
        thumbnails=thumbs,
        contents=Contents(
            model=ModelEntry(id=DEFAULT_MODEL, fingerprint=fingerprint, input_size=224, dim=DIM),
            index_type="Flat",
            collection=CollectionEntry(root=str(data / "none"), files_seen=n),
            layouts=("umap", "grid"),
        ),
        extra_files={
            "layouts/umap.npy": _npy(pos),
            "layouts/grid.npy": _npy(grid),
            "clusters.npy": _npy(cluster),
            "maps.json": json.dumps(maps_json).encode(),
            **atlas_files,
        },
    )
    publish(data, snap)


def serve_in_process(data: Path):
    """The app under uvicorn in a thread of this process (not `pixscape serve`)."""
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Settings(data_dir=data)), host=HOST, port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://{HOST}:{port}"


PAN_JS = """async (ms) => {
  const c = document.getElementById('map-canvas');
  const r = c.getBoundingClientRect();
  let x = r.left + r.width / 2, y = r.top + r.height / 2;
  const ev = (type) => new PointerEvent(type, {pointerId: 7, isPrimary: true, bubbles: true,
    clientX: x, clientY: y, buttons: type === 'pointerup' ? 0 : 1});
  c.dispatchEvent(ev('pointerdown'));
  const before = Number(c.dataset.frames);
  const times = [];
  const start = performance.now();
  await new Promise((done) => {
    const step = (t) => {
      times.push(t);
      const k = times.length;
      x += 7 * Math.cos(k / 25);
      y += 5 * Math.sin(k / 40);
      c.dispatchEvent(ev('pointermove'));
      if (t - start < ms) requestAnimationFrame(step); else done();
    };
    requestAnimationFrame(step);
  });
  c.dispatchEvent(ev('pointerup'));
  return {times, draws: Number(c.dataset.frames) - before, elapsed: performance.now() - start};
}"""


def _sheets_ms(page, n: int, renderer: str, view: str) -> None:
    try:
        page.wait_for_function(
            "() => performance.getEntriesByName('pixscape-map-sheets').length", timeout=120_000
        )
    except Exception:  # a figure missing is better than no figures
        note(f"{n}: atlas sheets did not all load")
        return
    ms = page.evaluate("() => performance.getEntriesByName('pixscape-map-sheets')[0].startTime")
    emit(BENCH, "sheets_ms", round(ms, 1), "ms", n=n, renderer=renderer, view=view)


def measure(base: str, n: int, seconds: float, force: str | None) -> None:
    from playwright.sync_api import sync_playwright

    extra = f"&renderer={force}" if force else ""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for view, zoom in (("full", 1), ("zoom8", 8)):
            # A fresh page per view, so each first paint and sheet load is a cold one.
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            errors: list[str] = []
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.goto(f"{base}/#v=map&layout=umap&x=0.5&y=0.5&z={zoom}{extra}")
            page.wait_for_selector("#map-canvas[data-painted='1']", timeout=120_000)
            renderer = page.get_attribute("#map-canvas", "data-renderer") or "?"
            first = page.evaluate(
                "() => performance.getEntriesByName('pixscape-map-first-paint')[0].startTime"
            )
            emit(BENCH, "first_paint_ms", round(first, 1), "ms", n=n, renderer=renderer, view=view)
            if view == "zoom8" or n <= 30000:
                _sheets_ms(page, n, renderer, view)
            page.wait_for_timeout(1000)
            out = page.evaluate(PAN_JS, seconds * 1000)
            gaps = np.diff(out["times"])
            fps = 1000 * (len(out["times"]) - 1) / (out["times"][-1] - out["times"][0])
            emit(
                BENCH,
                "pan_fps",
                round(fps, 1),
                "frames/s",
                n=n,
                renderer=renderer,
                view=view,
                draws=out["draws"],
                seconds=round(out["elapsed"] / 1000, 2),
            )
            emit(
                BENCH,
                "pan_frame_p95_ms",
                round(percentile(list(gaps), 95), 1),
                "ms",
                n=n,
                renderer=renderer,
                view=view,
            )
            if errors:
                note(f"page errors: {errors}")
            page.close()
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument(
        "--renderers",
        default="auto,webgl",
        help="auto (what the page picks: Canvas2D where WebGL is software), webgl, canvas",
    )
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "pixscape-web-fps")
    args = ap.parse_args()
    models = args.cache / "models"
    for n in (int(s) for s in args.sizes.split(",")):
        data = args.cache / f"n{n}"
        if not (data / "CURRENT").exists():
            shutil.rmtree(data, ignore_errors=True)
            note(f"building a synthetic snapshot of {n:,} images in {data}")
            t0 = time.perf_counter()
            build_synthetic(data, n, models)
            note(f"built in {time.perf_counter() - t0:.0f}s")
        server, thread, base = serve_in_process(data)
        try:
            for r in args.renderers.split(","):
                measure(base, n, args.seconds, None if r == "auto" else r)
        finally:
            server.should_exit = True
            thread.join(timeout=10)


if __name__ == "__main__":
    main()
