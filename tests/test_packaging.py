"""What a user of the installed package sees: a normal `pixscape index` is quiet."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT, sample_images


def test_index_prints_no_warnings(tmp_path: Path) -> None:
    collection = tmp_path / "collection" / "a"
    collection.mkdir(parents=True)
    for src in sample_images(1)[:3]:
        shutil.copyfile(src, collection / src.name)
    # A fresh data folder: the model export (where torch's notices came from) runs.
    cmd = [sys.executable, "-m", "service.cli", "index", str(collection.parent)]
    res = subprocess.run(
        [*cmd, "--data", str(tmp_path / "data")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    # "Warning" as Python's warnings print it (FutureWarning, UserWarning...);
    # torch's own log lines name torchvision.
    noisy = [ln for ln in res.stderr.splitlines() if "Warning" in ln or "torchvision" in ln]
    assert not noisy, noisy
