"""Is static int8 quantization of the feature model worth adopting?

Run: PYTHONPATH=. python bench/int8_quality.py [--variants qdq,qop,...]

Calibrates on illustrations from images/ (not the evaluation photos), embeds
the 600 photos in /work/shared/data/photos with the fp32 and int8 models and
prints one JSON line per figure:
  embed_throughput  images/s, batch 32, median of runs, threads=0 and 1
  fp32_cosine       cosine between fp32 and int8 vectors of the same photo
  recall_at_10      int8 top-10 neighbours vs fp32 top-10 (exact IP, self excluded)
  robustness        top-1/top-3 hit rate finding the original from a degraded
                    copy (60% downscale, 10% centre crop, JPEG q=70)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from quantize import quantize_static_int8  # noqa: E402

from indexer.decode import center_crop, decode_image  # noqa: E402
from indexer.embed import Embedder  # noqa: E402

PHOTOS = Path(os.environ.get("PIXSCAPE_PHOTOS", ROOT.parent / "shared" / "data" / "photos"))
IMAGES = ROOT / "images"
SIZE = 224
BATCH = 32

# name -> quantize_static_int8 keyword arguments
ALL_INT8 = {"exclude_first_conv": False, "exclude_depthwise": False, "reduce_range": False}
VARIANTS: dict[str, dict] = {
    # every Conv quantized
    "int8-qdq": {"quant_format": "QDQ", **ALL_INT8},
    "int8-qop": {"quant_format": "QOperator", **ALL_INT8},
    "int8-qdq-rr": {"quant_format": "QDQ", **ALL_INT8, "reduce_range": True},
    "int8-qdq-pct": {"quant_format": "QDQ", **ALL_INT8, "calibrate_method": "Percentile"},
    "int8-qdq-nostem": {"quant_format": "QDQ", **ALL_INT8, "exclude_first_conv": True},
    # quantize_static_int8's defaults: stem + depthwise convs float, 7-bit weights
    "int8-qdq-safe": {"quant_format": "QDQ"},
    "int8-qdq-safe-tensor": {"quant_format": "QDQ", "per_channel": False},
}
DEFAULT_VARIANTS = "int8-qdq,int8-qdq-safe"


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def fp32_model() -> Path:
    found = sorted(Path("/tmp/d1/models").glob("efficientnet-lite0-*.onnx"))
    if found:
        return found[0]
    from indexer.models import ensure_onnx, get_spec

    path, _ = ensure_onnx(
        get_spec("efficientnet-lite0"), Path(tempfile.gettempdir()) / "pixscape-models"
    )
    return path


def load_pixels(paths: list[Path]) -> np.ndarray:
    return np.stack([center_crop(decode_image(p).image, SIZE) for p in paths])


def calibration_paths(n: int) -> list[Path]:
    """Every k-th of the sample illustrations, so all labels are represented."""
    files = sorted(p for p in IMAGES.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    step = max(1, len(files) // n)
    return files[::step][:n]


def degraded_pixels(path: Path) -> np.ndarray:
    """60% downscale, keep the central 90% (10% cropped), JPEG q=70, then the usual crop."""
    im = decode_image(path).image
    w, h = im.size
    im = im.resize((max(1, round(w * 0.6)), max(1, round(h * 0.6))), Image.Resampling.BILINEAR)
    w, h = im.size
    cw, ch = round(w * 0.9), round(h * 0.9)
    left, top = (w - cw) // 2, (h - ch) // 2
    im = im.crop((left, top, left + cw, top + ch))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=70)
    return center_crop(decode_image(buf.getvalue()).image, SIZE)


def embed_all(emb: Embedder, pixels: np.ndarray) -> np.ndarray:
    return np.concatenate([emb.embed(pixels[i : i + BATCH]) for i in range(0, len(pixels), BATCH)])


def throughput(model: Path, pixels: np.ndarray, threads: int, runs: int, batches: int) -> float:
    emb = Embedder(model, threads=threads, device="cpu")
    sample = pixels[: BATCH * batches]
    emb.embed(sample[:BATCH])  # warm-up
    rates = []
    for _ in range(runs):
        t0 = time.perf_counter()
        for i in range(0, len(sample), BATCH):
            emb.embed(sample[i : i + BATCH])
        rates.append(len(sample) / (time.perf_counter() - t0))
    return float(np.median(rates))


def topk_neighbours(vecs: np.ndarray, k: int) -> np.ndarray:
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def robustness(originals: np.ndarray, queries: np.ndarray, targets: np.ndarray) -> dict:
    ranks = np.argsort(-(queries @ originals.T), axis=1, kind="stable")
    top1 = float(np.mean(ranks[:, 0] == targets))
    top3 = float(np.mean([t in r[:3] for r, t in zip(ranks, targets, strict=False)]))
    return {"top1": top1, "top3": top3}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help=",".join(VARIANTS))
    ap.add_argument("--calibration", type=int, default=96)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--batches", type=int, default=4, help="batches of 32 per timed run")
    ap.add_argument("--robust-n", type=int, default=50)
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]

    fp32 = fp32_model()
    photo_paths = sorted(
        p for p in PHOTOS.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png")
    )
    t0 = time.perf_counter()
    photos = load_pixels(photo_paths)
    calib = load_pixels(calibration_paths(args.calibration))
    rob_idx = np.linspace(0, len(photo_paths) - 1, args.robust_n).round().astype(int)
    degraded = np.stack([degraded_pixels(photo_paths[i]) for i in rob_idx])
    emit(
        figure="setup",
        model=fp32.name,
        photos=len(photos),
        calibration_images=len(calib),
        robustness_queries=len(degraded),
        cpu_count=os.cpu_count(),
        decode_s=round(time.perf_counter() - t0, 2),
    )

    models: dict[str, Path] = {"fp32": fp32}
    with tempfile.TemporaryDirectory(prefix="int8-bench-") as work:
        for name in variants:
            t0 = time.perf_counter()
            models[name] = quantize_static_int8(
                fp32, Path(work) / f"{name}.onnx", calib, **VARIANTS[name]
            )
            emit(
                figure="quantize",
                variant=name,
                seconds=round(time.perf_counter() - t0, 2),
                size_mb=round(models[name].stat().st_size / 1e6, 2),
                fp32_size_mb=round(fp32.stat().st_size / 1e6, 2),
            )

        vecs, deg = {}, {}
        for name, path in models.items():
            emb = Embedder(path, threads=0, device="cpu")
            vecs[name] = embed_all(emb, photos)
            deg[name] = embed_all(emb, degraded)

        for threads in (0, 1):
            for name, path in models.items():
                ips = throughput(path, photos, threads, args.runs, args.batches)
                emit(
                    figure="embed_throughput",
                    variant=name,
                    threads=threads,
                    batch=BATCH,
                    images_per_s=round(ips, 1),
                )

        ref_nn = topk_neighbours(vecs["fp32"], 10)
        for name in models:
            if name != "fp32":
                cos = np.sum(vecs["fp32"] * vecs[name], axis=1)
                emit(
                    figure="fp32_cosine",
                    variant=name,
                    mean=round(float(cos.mean()), 5),
                    min=round(float(cos.min()), 5),
                    p05=round(float(np.percentile(cos, 5)), 5),
                )
                nn = topk_neighbours(vecs[name], 10)
                rec = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ref_nn, nn, strict=False)])
                top1 = float(np.mean(ref_nn[:, 0] == nn[:, 0]))
                emit(
                    figure="recall_at_10",
                    variant=name,
                    vs="fp32",
                    recall=round(float(rec), 4),
                    top1_agreement=round(top1, 4),
                )
            r = robustness(vecs[name], deg[name], rob_idx)
            emit(
                figure="robustness",
                variant=name,
                queries=len(rob_idx),
                top1=round(r["top1"], 4),
                top3=round(r["top3"], 4),
            )


if __name__ == "__main__":
    main()
