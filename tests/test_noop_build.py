"""Nothing changed, nothing published: an index run over the same files with the
same options keeps the live snapshot (same id, nothing written), so the
service's atlas and map caches stay valid; any change to a file or an option
makes a new one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.build import build
from indexer.snapshot import current_id, open_snapshot

from .conftest import ROOT, fresh_data_dir, sample_images


def _state(data: Path) -> tuple[str | None, int, list[str]]:
    """What a publish changes: CURRENT's content and mtime, and the snapshots."""
    current = data / "CURRENT"
    return (
        current_id(data),
        current.stat().st_mtime_ns,
        sorted(p.name for p in (data / "snapshots").iterdir()),
    )


@pytest.fixture()
def site(tmp_path: Path, models_dir: Path) -> dict[str, Path]:
    collection = tmp_path / "collection"
    for src in sample_images(per_label=1)[:10]:
        (collection / src.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, collection / src.parent.name / src.name)
    (collection / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # fails decode
    return {"collection": collection, "data": fresh_data_dir(tmp_path, models_dir)}


def test_an_unchanged_rebuild_keeps_the_live_snapshot(site: dict[str, Path]) -> None:
    collection, data = site["collection"], site["data"]
    first = build(collection, data, layouts="grid")
    assert not first.unchanged
    before = _state(data)
    again = build(collection, data, layouts="grid")
    assert again.unchanged and again.snapshot_id == first.snapshot_id
    assert _state(data) == before  # CURRENT not rewritten, no snapshot added
    assert again.indexed == first.indexed and again.embedded == 0
    # It still reports what the live snapshot left out, and why.
    assert {(s.path, s.reason) for s in again.skipped} == {
        (s.path, s.reason) for s in first.skipped
    }
    assert [s.path for s in again.skipped] == ["broken.png"]

    # Touching a file changes its mtime, not its content: still nothing to do.
    one = next((collection / "birds").iterdir())
    os.utime(one, ns=(1, 1))
    assert build(collection, data, layouts="grid").snapshot_id == first.snapshot_id
    assert _state(data) == before


def test_the_cli_says_nothing_changed(site: dict[str, Path]) -> None:
    collection, data = site["collection"], site["data"]
    first = build(collection, data, layouts="grid")  # the CLI's defaults otherwise
    before = _state(data)
    cmd = [sys.executable, "-m", "service.cli", "index", str(collection), "--data", str(data)]
    run = subprocess.run(
        [*cmd, "--layouts", "grid"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert f"nothing changed: snapshot {first.snapshot_id} stays live" in run.stdout
    assert "skipped broken.png" in run.stdout
    assert _state(data) == before


def test_a_changed_option_or_file_makes_a_new_snapshot(site: dict[str, Path]) -> None:
    collection, data = site["collection"], site["data"]

    def rebuild(layouts: str = "grid,tsne", graph_k: int = 5, **options: object) -> str | None:
        """The id of the snapshot this build published, None when it kept the live one."""
        report = build(collection, data, layouts=layouts, graph_k=graph_k, **options)  # type: ignore[arg-type]
        assert current_id(data) == report.snapshot_id
        return None if report.unchanged else report.snapshot_id

    ids = [rebuild(layouts="grid", graph_k=10)]
    ids.append(rebuild(layouts="grid"))  # another graph_k
    assert rebuild(layouts="grid") is None  # the same options again: kept
    ids.append(rebuild())  # another set of layouts
    extra = next(p for p in sample_images(per_label=2) if p.parent.name == "birds")
    shutil.copyfile(extra, collection / "added.png")
    ids.append(rebuild())  # a new file
    shutil.copyfile(next((collection / "fish").iterdir()), collection / "added.png")
    ids.append(rebuild())  # new content under the same name
    ids.append(rebuild(relayout=True))  # --relayout always recomputes the maps
    assert None not in ids and len(set(ids)) == len(ids)
    assert open_snapshot(data).count == 11
