"""Indexing throughput: a notebook-style baseline against pixscape's pipeline.

Run: python bench/index_throughput.py [--photos PATH] [--limit N] [--naive-limit 100]
                                      [--runs 3] [--skip-cli]

Prints one JSON line per figure on stdout (progress goes to stderr):
  naive_images_per_s       one image at a time: PIL open + resize/crop to 224, eager
                           PyTorch forward at batch size 1 under no_grad (torch's
                           default thread count); model load and three warm-up forwards
                           are not timed. Run on the first --naive-limit photos.
  export_seconds           one ONNX export of the model (done once, timed apart)
  pixscape_images_per_s    build() into a fresh data dir whose models/ is already
                           populated: embedded / embed_seconds (decode + embed stage)
  pixscape_build_seconds   the same build()'s whole wall time (scan, hash, decode,
                           embed, FAISS, thumbnails, snapshot write, publish)
  speedup_vs_naive         pixscape_images_per_s / naive_images_per_s
  cli_cold_seconds         `pixscape index PHOTOS --data TMP --quiet` as a subprocess,
                           empty data dir: includes interpreter start-up and export
  cli_cold_export_seconds  export part of that run (manifest build.export_seconds)
  cli_cold_images_per_s    embed rate of that run (manifest embedded / embed_seconds)
  cli_warm_seconds         the same command again on the same data dir (all cached)
Timed figures are the median of --runs runs ("runs" in each line).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
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
    timed,
)

BENCH = "index"
SIZE = 224


def naive_rate(files: list[Path], runs: int) -> tuple[float, list[float]]:
    """The classic notebook loop: one PIL image, one eager forward, repeat."""
    import numpy as np
    import torch
    from PIL import Image

    from indexer.models import feature_module, get_spec

    model = feature_module(get_spec(MODEL_ID))
    with torch.no_grad():  # warm-up: first calls (allocation, kernel choice) are slower
        for _ in range(3):
            model(torch.zeros((1, SIZE, SIZE, 3), dtype=torch.uint8))

    def one_pass() -> int:
        done = 0
        with torch.no_grad():
            for path in files:
                im = Image.open(path).convert("RGB")
                w, h = im.size
                scale = SIZE / min(w, h)
                nw, nh = max(SIZE, round(w * scale)), max(SIZE, round(h * scale))
                im = im.resize((nw, nh), Image.Resampling.BILINEAR)
                left, top = (nw - SIZE) // 2, (nh - SIZE) // 2
                arr = np.asarray(im.crop((left, top, left + SIZE, top + SIZE)), dtype=np.uint8)
                out = model(torch.from_numpy(arr.copy())[None])
                # The features, and the class probabilities where the model has them.
                feats = out[0] if isinstance(out, tuple) else out
                done += int(feats.shape[0])
        return done

    rates = []
    for i in range(runs):
        seconds, done = timed(one_pass)
        rates.append(done / seconds)
        note(f"naive run {i + 1}/{runs}: {done} images in {seconds:.1f}s = {rates[-1]:.1f}/s")
    return median(rates), rates


def pixscape_builds(photos: Path, models_src: Path, runs: int, work: Path) -> list:
    from indexer.build import build

    reports = []
    for i in range(runs):
        data = work / f"build-{i}"
        data.mkdir()
        seed_models(models_src, data)
        report = build(photos, data, model_id=MODEL_ID)
        if report.export_seconds > 1.0:
            note(f"warning: build {i + 1} exported the model ({report.export_seconds:.1f}s)")
        note(
            f"build run {i + 1}/{runs}: {report.embedded} embedded at {report.embed_rate:.1f}/s,"
            f" build {report.seconds:.1f}s (export {report.export_seconds:.2f}s)"
        )
        reports.append(report)
        shutil.rmtree(data, ignore_errors=True)
    return reports


def pixscape_cli() -> list[str]:
    exe = Path(sys.executable).with_name("pixscape")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("pixscape")
    if found:
        return [found]
    return [sys.executable, "-m", "service.cli"]


def cli_index(photos: Path, data: Path) -> float:
    cmd = [*pixscape_cli(), "index", str(photos), "--data", str(data), "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return seconds


def manifest_build(data: Path) -> dict:
    snap_id = (data / "CURRENT").read_text().strip()
    manifest = json.loads((data / "snapshots" / snap_id / "manifest.json").read_text())
    return dict(manifest["build"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    ap.add_argument("--limit", type=int, default=None, help="use only the first N photos")
    ap.add_argument("--naive-limit", type=int, default=100, help="photos for the slow baseline")
    ap.add_argument("--runs", type=int, default=3, help="runs per timed figure (median)")
    ap.add_argument("--skip-cli", action="store_true", help="skip the CLI cold/warm figures")
    args = ap.parse_args()

    runs = max(1, args.runs)
    all_files = photo_files(args.photos, args.limit)
    naive_files = all_files[: args.naive_limit]
    note(f"{len(all_files)} photos in {args.photos}; load average {loadavg()}")

    with tempfile.TemporaryDirectory(prefix="pixscape-bench-") as tmp:
        work = Path(tmp)
        photos = limited_copy(args.photos, args.limit, work / "photos")
        n = len(all_files)

        # a. naive baseline
        naive, naive_runs = naive_rate(naive_files, runs)
        emit(
            BENCH,
            "naive_images_per_s",
            round(naive, 2),
            "images/s",
            n=len(naive_files),
            runs=runs,
            all_runs=[round(r, 2) for r in naive_runs],
            batch_size=1,
            engine="torch-eager",
            torch_threads=_torch_threads(),
        )

        # Export once, apart from everything else.
        export_s, _onnx = export_models(work / "models")
        emit(BENCH, "export_seconds", round(export_s, 2), "s", runs=1, model=MODEL_ID)

        # b. pixscape build() with the model already exported
        reports = pixscape_builds(photos, work / "models", runs, work)
        rates = [r.embed_rate for r in reports]
        walls = [r.seconds for r in reports]
        rate = median(rates)
        emit(
            BENCH,
            "pixscape_images_per_s",
            round(rate, 2),
            "images/s",
            n=reports[0].embedded,
            runs=runs,
            all_runs=[round(r, 2) for r in rates],
            batch_size=32,
            engine="onnxruntime",
            stage="decode+embed",
        )
        emit(
            BENCH,
            "pixscape_build_seconds",
            round(median(walls), 2),
            "s",
            n=reports[0].indexed,
            runs=runs,
            all_runs=[round(w, 2) for w in walls],
            export_included=False,
        )

        # c. ratio
        emit(BENCH, "speedup_vs_naive", round(rate / naive, 2), "x", n=n, runs=runs)

        # d. the CLI, cold (export included) and warm (all cached)
        if not args.skip_cli:
            colds, exports, cold_rates, warms = [], [], [], []
            for i in range(runs):
                data = work / f"cli-{i}"
                cold = cli_index(photos, data)
                info = manifest_build(data)
                warm = cli_index(photos, data)
                reused = manifest_build(data).get("reused")
                colds.append(cold)
                exports.append(float(info["export_seconds"]))
                cold_rates.append(info["embedded"] / max(float(info["embed_seconds"]), 1e-9))
                warms.append(warm)
                note(
                    f"cli run {i + 1}/{runs}: cold {cold:.1f}s (export {exports[-1]:.1f}s,"
                    f" embed {cold_rates[-1]:.1f}/s), warm {warm:.1f}s (reused {reused})"
                )
                shutil.rmtree(data, ignore_errors=True)
            emit(
                BENCH,
                "cli_cold_seconds",
                round(median(colds), 2),
                "s",
                n=n,
                runs=runs,
                all_runs=[round(c, 2) for c in colds],
                export_included=True,
            )
            emit(
                BENCH,
                "cli_cold_export_seconds",
                round(median(exports), 2),
                "s",
                n=n,
                runs=runs,
                all_runs=[round(e, 2) for e in exports],
            )
            emit(
                BENCH,
                "cli_cold_images_per_s",
                round(median(cold_rates), 2),
                "images/s",
                n=n,
                runs=runs,
                all_runs=[round(r, 2) for r in cold_rates],
            )
            emit(
                BENCH,
                "cli_warm_seconds",
                round(median(warms), 2),
                "s",
                n=n,
                runs=runs,
                all_runs=[round(w, 2) for w in warms],
            )
    note(f"done; load average {loadavg()}")
    return 0


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


if __name__ == "__main__":
    sys.exit(main())
