"""`pixscape index`: a thin CLI over build()."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import KNN_K, BuildConfig
from .graph import MAX_POWER, MIN_POWER
from .layout import LAYOUTS, LayoutParams, parse_layouts
from .models import MODELS
from .update import DRIFT_LIMIT

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def file_size(text: str) -> int:
    """A size in bytes, with an optional binary unit: 1048576, 500M, 2G, 1.5G."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = value[-1:] if value[-1:] in _UNITS else ""
    try:
        size = int(float(value[: len(value) - len(unit)]) * _UNITS[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1G, 500M)") from None
    if size < 1:
        raise argparse.ArgumentTypeError(f"the size must be positive, got {text!r}")
    return size


def add_index_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    # Defaults and ranges are BuildConfig's and LayoutParams': one home, checked there.
    d = BuildConfig()
    p = subparsers.add_parser("index", help="index a folder of images into a snapshot")
    p.add_argument("folder", nargs="?", default="images", type=Path, help="default: images/")
    p.add_argument("--data", default="data", type=Path, help="data folder (default: data/)")
    p.add_argument("--model", default=d.model_id, choices=sorted(MODELS))
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--workers", type=int, default=d.workers, help="decode threads (default: cores)")
    p.add_argument(
        "--threads", type=int, default=d.threads, help="inference threads (0: all cores)"
    )
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device)
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default=d.engine,
        help="decode + embed here (local) or as a Ray Data pipeline (ray: needs pixscape[ray])",
    )
    p.add_argument(
        "--address",
        default=d.ray_address,
        help="Ray cluster to join with --engine ray (e.g. auto, host:6379; default: a local one)",
    )
    p.add_argument("--max-pixels", type=int, default=d.max_pixels)
    p.add_argument(
        "--max-file-size",
        type=file_size,
        default=d.max_file_bytes,
        metavar="SIZE",
        help=f"skip larger files before reading them (bytes, or with K/M/G;"
        f" default {d.max_file_bytes >> 30}G)",
    )
    p.add_argument(
        "--graph-k",
        type=int,
        default=d.graph_k,
        help=f"neighbours per image in the path graph (1-{KNN_K}; {d.graph_k})",
    )
    p.add_argument(
        "--path-power",
        type=float,
        default=d.path_power,
        help=f"default path smoothness p: a step costs distance**p ({MIN_POWER:g}-{MAX_POWER:g};"
        f" higher: smaller steps; {d.path_power:g})",
    )
    _add_map_options(p, d, LayoutParams())
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run_index)


def _add_map_options(p: argparse.ArgumentParser, d: BuildConfig, lp: LayoutParams) -> None:
    p.add_argument(
        "--layouts",
        default=",".join(d.layouts),
        help=f"maps to compute, comma-separated from {','.join(LAYOUTS)} (default: all)",
    )
    p.add_argument(
        "--perplexity",
        type=float,
        default=lp.perplexity,
        help=f"t-SNE perplexity ({lp.perplexity:g})",
    )
    p.add_argument(
        "--n-neighbors",
        type=int,
        default=lp.n_neighbors,
        help=f"UMAP n_neighbors ({lp.n_neighbors})",
    )
    p.add_argument(
        "--min-dist", type=float, default=lp.min_dist, help=f"UMAP min_dist ({lp.min_dist:g})"
    )
    p.add_argument(
        "--seed", type=int, default=lp.seed, help=f"seed of the layouts and clusters ({lp.seed})"
    )
    p.add_argument(
        "--layout-sample",
        type=int,
        default=lp.sample,
        metavar="N",
        help=f"fit t-SNE/UMAP on at most N images, place the rest ({lp.sample})",
    )
    p.add_argument(
        "--relayout",
        action="store_true",
        help="recompute the maps in full (by default a rebuild keeps every unchanged image"
        " where it was and places new ones among their neighbours, until they pass"
        f" {DRIFT_LIMIT * 100:.0f}%%)",
    )


def config_of(args: argparse.Namespace) -> BuildConfig:
    """The BuildConfig the command line asks for (ValueError: what is wrong)."""
    return BuildConfig(
        model_id=args.model,
        batch_size=args.batch_size,
        workers=args.workers,
        threads=args.threads,
        device=args.device,
        engine=args.engine,
        ray_address=args.address,
        max_pixels=args.max_pixels,
        max_file_bytes=args.max_file_size,
        graph_k=args.graph_k,
        path_power=args.path_power,
        layouts=parse_layouts(args.layouts),
        layout_params=LayoutParams(
            perplexity=args.perplexity,
            n_neighbors=args.n_neighbors,
            min_dist=args.min_dist,
            seed=args.seed,
            sample=args.layout_sample,
        ),
        relayout=args.relayout,
    )


def run_index(args: argparse.Namespace) -> int:
    from .build import build
    from .cache import CacheRowLost
    from .engine_ray import RayNotInstalled
    from .progress import Progress
    from .scan import readable
    from .snapshot import SnapshotError

    progress = Progress(quiet=args.quiet)
    try:
        report = build(args.folder, args.data, config_of(args), progress=progress)
    # SnapshotError: a CURRENT that names no snapshot folder is refused, never followed.
    except (NotADirectoryError, ValueError, RayNotInstalled, CacheRowLost, SnapshotError) as exc:
        print(f"pixscape index: {exc}", file=sys.stderr)
        return 2
    data = readable(str(args.data))
    if not args.quiet and report.unchanged:
        print(
            f"nothing changed: snapshot {report.snapshot_id} stays live in {data}"
            f" ({report.indexed} images, skipped {len(report.skipped)}; no new snapshot written)"
        )
        for s in report.skipped:
            print(f"  skipped {readable(s.path)}: {s.reason}")
    elif not args.quiet:
        print(
            f"indexed {report.indexed} images ({report.embedded} embedded"
            f"{f' at {report.embed_rate:.0f} images/s' if report.embedded else ''},"
            f" {report.reused} from cache), skipped {len(report.skipped)},"
            f" in {report.seconds:.1f}s (model export {report.export_seconds:.1f}s)"
        )
        for s in report.skipped:
            print(f"  skipped {readable(s.path)}: {s.reason}")
        print(f"published snapshot {report.snapshot_id} in {data}")
    return 0
