"""Embedding throughput: the Ray engine against the local engine, same machine.

Run: python bench/ray_throughput.py [--photos PATH] [--limit N] [--runs 3] [--batch-size 32]
                                    [--variants V]

--variants V indexes V distinct versions of every photo (the photo itself, then
mirrored, upside down, flipped, and centre crops, each saved as a new JPEG): a
collection V times larger with the same decode and model cost per image, for the
collections the Ray engine is for (its start-up is paid once per build).

Needs the ray extra (pip install -e ".[indexer,dev,ray]"). Every figure comes from
build() into a fresh data dir (model already exported, empty cache) computing only
the grid layout, and measures the decode + embed stage only. One JSON line per
figure on stdout (progress goes to stderr):
  local_images_per_s        engine="local": embedded / embed_seconds
  ray_images_per_s          engine="ray" with a Ray runtime already up and settled (as
                            on a cluster joined with --address): embedded /
                            embed_seconds, which includes starting the actor pool
  ray_vs_local              ray_images_per_s / local_images_per_s (target: >= 0.8)
  local_steady_images_per_s the local run's rate from its first committed batch to
                            its last, i.e. without the time to the first batch
  ray_steady_images_per_s   the same for the Ray run: from the first shard ingested
                            to the last, i.e. without the actor pool's start-up
  ray_steady_vs_local       ray_steady_images_per_s / local_steady_images_per_s
  ray_first_shard_seconds   in the Ray run, from the start of the stage to the first
                            shard ingested: Ray starting actor processes, importing,
                            opening onnxruntime sessions, plus one batch of work
  ray_cold_images_per_s     engine="ray" with no runtime up: the engine starts a local
                            one (num_cpus = cores) and shuts it down, as
                            `pixscape index --engine ray` does without --address
  ray_startup_seconds       ray.init() of a local runtime, timed alone
Each run is a local build, then a Ray build with a runtime started just before
(timed apart), then a cold Ray build: the three figures of a run are taken close
together, and the local build never shares the machine with an idle Ray runtime.
Figures are medians over --runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _common import (
    DEFAULT_PHOTOS,
    MODEL_ID,
    emit,
    export_models,
    limited_copy,
    loadavg,
    median,
    note,
    photo_files,
    seed_models,
)

from indexer.progress import Progress

BENCH = "ray"


class Marks(Progress):
    """A silent Progress that remembers when the stage started and each count came."""

    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.started = 0.0
        self.done = 0
        self.marks: list[tuple[float, int]] = []

    def start(self, what: str, total: int) -> None:
        super().start(what, total)
        self.started = time.monotonic()

    def advance(self, n: int) -> None:
        super().advance(n)
        self.done += n
        if n:
            self.marks.append((time.monotonic(), self.done))


@dataclass(frozen=True)
class Run:
    rate: float  # embedded / embed_seconds
    steady: float  # from the first counted batch to the last
    first_seconds: float  # from the start of the stage to the first counted batch


def one_build(photos: Path, models: Path, data: Path, engine: str, batch_size: int) -> Run:
    """One build into a fresh data dir (removed after); its embed-stage figures."""
    from indexer.build import build

    seed_models(models, data)
    marks = Marks()
    report = build(
        photos,
        data,
        model_id=MODEL_ID,
        batch_size=batch_size,
        layouts="grid",
        engine=engine,
        progress=marks,
    )
    shutil.rmtree(data, ignore_errors=True)
    if report.export_seconds > 1.0:
        note(f"warning: the {engine} build exported the model ({report.export_seconds:.1f}s)")
    (t_first, n_first), (t_last, n_last) = marks.marks[0], marks.marks[-1]
    steady = (n_last - n_first) / (t_last - t_first) if t_last > t_first else float("nan")
    run = Run(report.embed_rate, steady, t_first - marks.started)
    note(
        f"{engine}: {report.embedded} embedded in {report.embed_seconds:.1f}s"
        f" = {run.rate:.1f}/s, steady {run.steady:.1f}/s, first batch after"
        f" {run.first_seconds:.1f}s (load {loadavg()})"
    )
    return run


def variant_copy(folder: Path, limit: int | None, dest: Path, variants: int) -> Path:
    """`variants` distinct JPEGs per photo in `dest` (the first is the photo itself)."""
    from PIL import Image, ImageOps

    makers = [
        ImageOps.mirror,
        ImageOps.flip,
        lambda im: ImageOps.mirror(ImageOps.flip(im)),
    ]
    dest.mkdir(parents=True, exist_ok=True)
    for p in photo_files(folder, limit):
        shutil.copy2(p, dest / p.name)
        with Image.open(p) as opened:
            im = ImageOps.exif_transpose(opened).convert("RGB")
        for v in range(1, variants):
            if v <= len(makers):
                out = makers[v - 1](im)
            else:  # centre crops, each a little tighter
                f = 1 - 0.05 * (v - len(makers))
                w, h = im.size
                box = (int(w * (1 - f) / 2), int(h * (1 - f) / 2))
                out = im.crop((*box, w - box[0], h - box[1]))
            out.save(dest / f"{p.stem}-v{v}.jpg", quality=90)
    return dest


def _settle() -> None:
    """A no-op task: running one per core waits out the worker processes Ray boots."""


def start_ray() -> float:
    """Start a local runtime; the seconds ray.init() took.

    Ray boots one worker process per core in the background after ray.init()
    returns; they are waited for (untimed) so that the warm figures measure a
    runtime that is up, not one still starting beside the pipeline.
    """
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # offline: no usage report
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
    seconds = time.perf_counter() - t0
    settle = ray.remote(_settle)
    ray.get([settle.remote() for _ in range(os.cpu_count() or 1)])
    return seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N photos")
    ap.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--variants", type=int, default=1, help="versions of each photo (1)")
    args = ap.parse_args()

    import ray

    runs = max(1, args.runs)
    n = len(photo_files(args.photos, args.limit)) * max(1, args.variants)
    note(f"{n} images from {args.photos}; load average {loadavg()}")
    local: list[Run] = []
    warm: list[Run] = []
    cold: list[Run] = []
    startups: list[float] = []
    with tempfile.TemporaryDirectory(prefix="pixscape-bench-") as tmp:
        work = Path(tmp)
        if args.variants > 1:
            photos = variant_copy(args.photos, args.limit, work / "photos", args.variants)
        else:
            photos = limited_copy(args.photos, args.limit, work / "photos")
        models = work / "models"
        export_models(models)
        for i in range(runs):
            local.append(one_build(photos, models, work / f"l{i}", "local", args.batch_size))
            startups.append(start_ray())
            try:
                warm.append(one_build(photos, models, work / f"w{i}", "ray", args.batch_size))
            finally:
                ray.shutdown()
            cold.append(one_build(photos, models, work / f"c{i}", "ray", args.batch_size))

    def fig(figure: str, values: list[float], unit: str, **extra: object) -> float:
        value = median(values)
        emit(
            BENCH,
            figure,
            round(value, 2),
            unit,
            n=n,
            runs=runs,
            all_runs=[round(v, 2) for v in values],
            batch_size=args.batch_size,
            **extra,
        )
        return value

    local_rate = fig("local_images_per_s", [r.rate for r in local], "images/s", engine="local")
    ray_rate = fig(
        "ray_images_per_s",
        [r.rate for r in warm],
        "images/s",
        engine="ray",
        runtime="already up",
        ray=ray.__version__,
    )
    emit(BENCH, "ray_vs_local", round(ray_rate / local_rate, 3), "x", n=n, runs=runs, target=0.8)
    local_steady = fig("local_steady_images_per_s", [r.steady for r in local], "images/s")
    ray_steady = fig("ray_steady_images_per_s", [r.steady for r in warm], "images/s")
    emit(
        BENCH,
        "ray_steady_vs_local",
        round(ray_steady / local_steady, 3),
        "x",
        n=n,
        runs=runs,
        target=0.8,
    )
    fig("ray_first_shard_seconds", [r.first_seconds for r in warm], "s")
    fig("ray_cold_images_per_s", [r.rate for r in cold], "images/s", runtime="started by engine")
    fig("ray_startup_seconds", startups, "s")
    note(f"done; load average {loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
