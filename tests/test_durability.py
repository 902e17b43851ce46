"""SIGKILL the indexer at random points: CURRENT is always whole, and the resumed
build publishes the same content as an uninterrupted one."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from indexer.build import build
from indexer.snapshot import current_id, open_snapshot

from .conftest import ROOT, fresh_data_dir, make_collection
from .test_build import cache_rows

KILLS = 4


def _content(data: Path) -> tuple[list[tuple[str, str]], np.ndarray, list[bytes]]:
    snap = open_snapshot(data)
    rows = [(r.path, r.sha256) for r in snap.rows]
    thumbs = [snap.thumbnail_path(r.id).read_bytes() for r in snap.rows]
    return rows, np.asarray(snap.vectors), thumbs


def test_random_kills_never_break_current_and_resume_to_the_same_snapshot(
    tmp_path: Path, models_dir: Path
) -> None:
    collection = make_collection(tmp_path / "collection", photos=80)
    reference = fresh_data_dir(tmp_path / "ref", models_dir)
    build(collection, reference)
    expected = _content(reference)

    data = fresh_data_dir(tmp_path / "killed", models_dir)
    rng = random.Random(1234)
    cmd = [
        sys.executable,
        "-m",
        "service.cli",
        "index",
        str(collection),
        "--data",
        str(data),
        "--quiet",
        "--batch-size",
        "8",
    ]
    total = len(expected[0])
    kills = 0
    for attempt in range(KILLS):
        proc = subprocess.Popen(cmd, cwd=ROOT)
        if attempt < KILLS - 1:  # somewhere in the middle of embedding
            target = rng.randint(cache_rows(data) + 1, total - 1)
            while cache_rows(data) < target and proc.poll() is None:
                time.sleep(0.01)
        else:  # after the last batch: while the snapshot is being written
            while cache_rows(data) < total and proc.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.2))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        if current_id(data) is not None:  # whatever CURRENT names is whole and verifies
            assert open_snapshot(data).count == total
    assert kills >= KILLS - 1, "the builds finished before they could be killed"

    build(collection, data)
    rows, vectors, thumbs = _content(data)
    assert rows == expected[0]
    assert thumbs == expected[2]
    np.testing.assert_array_equal(vectors, expected[1])
    assert not list((data / "snapshots").glob(".tmp-*"))
