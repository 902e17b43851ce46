"""What a user of the installed package sees: a normal `pixscape index` is quiet, and a
wheel (`pip install .`, not editable) serves the page."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
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


# What the wheel must build from: the distribution's own files, copied out of the
# checkout so the build's build/ and egg-info land in a temp folder, not the repo.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "indexer", "service")
WEB = ROOT / "service" / "web"


def _web_files() -> set[str]:
    """Every file of the page, as its path inside the wheel (service/web/...)."""
    return {
        p.relative_to(ROOT).as_posix()
        for p in WEB.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def _pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_wheel_carries_and_serves_the_page(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in WHEEL_SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copyfile(path, src / name)
    # Offline and quick: the venv's pinned setuptools, no isolated build environment.
    _pip(
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-w",
        str(tmp_path / "dist"),
        str(src),
    )
    (wheel,) = (tmp_path / "dist").glob("pixscape-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        carried = {n for n in zf.namelist() if n.startswith("service/web/")}
        assert {"indexer/concepts.json", "indexer/CONCEPTS.md"} <= set(zf.namelist())
    expected = _web_files()
    assert {"service/web/index.html", "service/web/favicon.svg"} <= expected
    assert any(n.startswith("service/web/css/") for n in expected)
    assert any(n.startswith("service/web/js/map/") for n in expected)
    assert carried == expected, sorted(expected ^ carried)

    # Installed (not editable) into a bare target, the service finds the page in it.
    target = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel))
    probe = """
import sys
from pathlib import Path
from fastapi.testclient import TestClient
import service
from service.app import BUNDLED_WEB, create_app
from service.settings import Settings
target = Path(sys.argv[1]).resolve()
assert Path(service.__file__).resolve().is_relative_to(target), service.__file__
assert BUNDLED_WEB.is_relative_to(target), BUNDLED_WEB
assert (BUNDLED_WEB / "index.html").is_file()
client = TestClient(create_app(Settings(data_dir=Path(sys.argv[2]))))
page = client.get("/")
assert page.status_code == 200 and "<title>" in page.text, page.status_code
assert client.get("/favicon.svg").status_code == 200
from indexer.concepts import TABLE, Concepts
assert TABLE.is_relative_to(target) and len(Concepts.load().classes("dog")) == 118
print(BUNDLED_WEB)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXSCAPE_")}
    env["PYTHONPATH"] = str(target)  # the installed package; the checkout is not on the path
    res = subprocess.run(
        [sys.executable, "-c", probe, str(target), str(tmp_path / "data")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert Path(res.stdout.strip()).resolve() == (target / "service" / "web").resolve()
