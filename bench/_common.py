"""Shared helpers for the benchmarks in bench/ (not a test module, not product code)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# ../shared/data/photos relative to the repository root.
DEFAULT_PHOTOS = (ROOT / ".." / "shared" / "data" / "photos").resolve()
MODEL_ID = "efficientnet-lite0"

T = TypeVar("T")


def emit(bench: str, figure: str, value: float | int | None, unit: str, **extra: Any) -> None:
    """One machine-readable line per figure on stdout."""
    line: dict[str, Any] = {"bench": bench, "figure": figure, "value": value, "unit": unit}
    line.update(extra)
    line.setdefault("cpus", os.cpu_count())
    # Other work on a 2-core machine skews every figure: record how busy it was.
    line.setdefault("loadavg_1m", loadavg())
    print(json.dumps(line), flush=True)


def note(message: str) -> None:
    """Human-readable progress goes to stderr, so stdout stays JSON lines only."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def photo_files(folder: Path, limit: int | None = None) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return files[:limit] if limit else files


def limited_copy(folder: Path, limit: int | None, dest: Path) -> Path:
    """`folder` itself, or (with a limit) a copy of its first `limit` files.

    A copy, not symlinks: the scanner rightly refuses links that leave the folder.
    """
    if not limit:
        return folder
    dest.mkdir(parents=True, exist_ok=True)
    for p in photo_files(folder, limit):
        shutil.copy2(p, dest / p.name)
    return dest


def export_models(models_dir: Path) -> tuple[float, Path]:
    """Export the ONNX model once into `models_dir`; returns (seconds, onnx path)."""
    from indexer.models import ensure_onnx, get_spec

    seconds, (path, _fp) = timed(lambda: ensure_onnx(get_spec(MODEL_ID), models_dir))
    return seconds, path


def seed_models(src_models: Path, data_dir: Path) -> None:
    """Pre-populate data_dir/models so build() skips the export."""
    shutil.copytree(src_models, data_dir / "models")


def loadavg() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return float("nan")
