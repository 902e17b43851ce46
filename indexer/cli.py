"""`pixscape index`: a thin CLI over build()."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .decode import DEFAULT_MAX_PIXELS
from .layout import FIT_SAMPLE
from .models import DEFAULT_MODEL, MODELS
from .scan import DEFAULT_MAX_FILE_BYTES

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
    p = subparsers.add_parser("index", help="index a folder of images into a snapshot")
    p.add_argument("folder", nargs="?", default="images", type=Path, help="default: images/")
    p.add_argument("--data", default="data", type=Path, help="data folder (default: data/)")
    p.add_argument("--model", default=DEFAULT_MODEL, choices=sorted(MODELS))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=None, help="decode threads (default: cores)")
    p.add_argument("--threads", type=int, default=0, help="inference threads (0: all cores)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="decode + embed here (local) or as a Ray Data pipeline (ray: needs pixscape[ray])",
    )
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join with --engine ray (e.g. auto, host:6379; default: a local one)",
    )
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    p.add_argument(
        "--max-file-size",
        type=file_size,
        default=DEFAULT_MAX_FILE_BYTES,
        metavar="SIZE",
        help="skip larger files before reading them (bytes, or with K/M/G; default 1G)",
    )
    p.add_argument(
        "--graph-k", type=int, default=None, help="neighbours per image in the path graph (1-30)"
    )
    p.add_argument(
        "--path-power",
        type=float,
        default=None,
        help="default path smoothness p: a step costs distance**p (1-8; higher: smaller steps)",
    )
    p.add_argument(
        "--layouts",
        default="tsne,umap,grid",
        help="maps to compute, comma-separated from tsne,umap,grid (default: all three)",
    )
    p.add_argument("--perplexity", type=float, default=30.0, help="t-SNE perplexity (30)")
    p.add_argument("--n-neighbors", type=int, default=15, help="UMAP n_neighbors (15)")
    p.add_argument("--min-dist", type=float, default=0.1, help="UMAP min_dist (0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the layouts and clusters (0)")
    p.add_argument(
        "--layout-sample",
        type=int,
        default=FIT_SAMPLE,
        metavar="N",
        help=f"fit t-SNE/UMAP on at most N images, place the rest ({FIT_SAMPLE})",
    )
    p.add_argument(
        "--relayout",
        action="store_true",
        help="recompute the maps in full (by default a rebuild keeps every unchanged image"
        " where it was and places new ones among their neighbours, until they pass 25%%)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run_index)


def run_index(args: argparse.Namespace) -> int:
    from .build import build
    from .cache import CacheRowLost
    from .engine_ray import RayNotInstalled
    from .layout import LayoutParams
    from .progress import Progress
    from .scan import readable
    from .snapshot import SnapshotError

    if args.address and args.engine != "ray":
        print("pixscape index: --address needs --engine ray", file=sys.stderr)
        return 2
    progress = Progress(quiet=args.quiet)
    # Unset options keep build()'s measured defaults (indexer.graph.DEFAULT_*).
    graph_options = {
        name: value
        for name, value in (("graph_k", args.graph_k), ("path_power", args.path_power))
        if value is not None
    }
    try:
        report = build(
            args.folder,
            args.data,
            model_id=args.model,
            batch_size=args.batch_size,
            workers=args.workers,
            threads=args.threads,
            device=args.device,
            max_pixels=args.max_pixels,
            max_file_bytes=args.max_file_size,
            engine=args.engine,
            ray_address=args.address,
            progress=progress,
            layouts=args.layouts,
            layout_params=LayoutParams(
                perplexity=args.perplexity,
                n_neighbors=args.n_neighbors,
                min_dist=args.min_dist,
                seed=args.seed,
                sample=args.layout_sample,
            ),
            relayout=args.relayout,
            **graph_options,  # type: ignore[arg-type]
        )
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
