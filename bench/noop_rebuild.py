"""What an index run costs when nothing changed, and what refusing a huge non-image costs.

    python bench/noop_rebuild.py                  # the sample collection in images/
    python bench/noop_rebuild.py --folder DIR --runs 5

Figures: `first_build_s` (the folder from nothing, model export excluded),
`noop_rebuild_s` (the same folder again: the live snapshot stays, nothing is
written; median of --runs), `option_rebuild_s` (one option changed, graph_k: a
new snapshot, carried over), `sparse_refusal_s` and `sparse_refusal_bytes_read`
(scanning a folder holding one 20 GB sparse file named .jpg: refused by its size,
or with the limit raised by its first bytes; bytes from /proc/self/io).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from functools import partial
from pathlib import Path

from _common import ROOT, emit, median, note, timed

from indexer.build import build
from indexer.models import ensure_onnx, get_spec
from indexer.scan import scan_folder

BENCH = "noop_rebuild"
SPARSE = 20 << 30


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return -1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=ROOT / "images")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pixscape-noop-"))
    try:
        data = work / "data"
        ensure_onnx(get_spec("efficientnet-lite0"), data / "models")
        first_s, first = timed(lambda: build(args.folder, data, layouts="grid,tsne"))
        emit(BENCH, "first_build_s", round(first_s, 2), "s", n=first.indexed, runs=1)
        times = []
        for _ in range(args.runs):
            seconds, again = timed(lambda: build(args.folder, data, layouts="grid,tsne"))
            assert again.unchanged and again.snapshot_id == first.snapshot_id
            times.append(seconds)
        emit(BENCH, "noop_rebuild_s", round(median(times), 3), "s", n=first.indexed, runs=args.runs)
        option_s, changed = timed(lambda: build(args.folder, data, layouts="grid,tsne", graph_k=5))
        assert not changed.unchanged
        emit(BENCH, "option_rebuild_s", round(option_s, 2), "s", n=first.indexed, runs=1)

        folder = work / "sparse"
        folder.mkdir()
        with open(folder / "huge.jpg", "wb") as fh:
            fh.truncate(SPARSE)
        for scan, why in (
            (partial(scan_folder, folder), "size"),
            (partial(scan_folder, folder, max_file_bytes=SPARSE * 2), "first bytes"),
        ):
            before = _bytes_read()
            seconds, (_, skipped) = timed(scan)
            read = _bytes_read() - before
            note(f"refused by {why}: {skipped[0].reason}")
            extra = {"file_bytes": SPARSE, "refused_by": why, "runs": 1}
            emit(BENCH, "sparse_refusal_s", round(seconds, 4), "s", **extra)
            emit(BENCH, "sparse_refusal_bytes_read", read, "bytes", **extra)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
