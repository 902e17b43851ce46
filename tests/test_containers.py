"""The container files, checked without an engine (these machines have none).

What each image installs (the service image has no torch), how docker-compose.yml
wires them (ports on the host's loopback, the healthcheck, volumes at the same
paths), that the healthcheck's one-liner really tells "ok" from "no snapshot",
and, where Debian's docker-compose is installed, that Compose accepts the files.
The compose files are read by indentation (PyYAML is not a dependency); Compose
itself is the full parser.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_GPU = ROOT / "docker-compose.gpu.yml"
SERVICE_DOCKERFILE = ROOT / "docker" / "service.Dockerfile"
INDEXER_DOCKERFILE = ROOT / "docker" / "indexer.Dockerfile"
IMAGES = "/srv/pixscape/images"
DATA = "/srv/pixscape/data"


# --- Dockerfiles ---------------------------------------------------------------


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        out.append((keyword.upper(), args.strip()))
        pending = ""
    assert not pending, f"{dockerfile.name} ends inside a continued line"
    return out


def run_args(dockerfile: Path) -> str:
    return "\n".join(args for kw, args in instructions(dockerfile) if kw == "RUN")


def pip_installs(dockerfile: Path) -> list[str]:
    """The arguments of every `pip install` in the RUN instructions."""
    return re.findall(r"pip install ([^&;|\n]+)", run_args(dockerfile))


def exec_form(dockerfile: Path, keyword: str) -> list[str]:
    """The JSON (exec-form) argument list of the last CMD or HEALTHCHECK."""
    args = [a for kw, a in instructions(dockerfile) if kw == keyword][-1]
    args = args.split("CMD", 1)[1] if keyword == "HEALTHCHECK" else args
    value = json.loads(args)
    assert isinstance(value, list)
    return value


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.mark.parametrize(
    "dockerfile", [SERVICE_DOCKERFILE, INDEXER_DOCKERFILE], ids=lambda p: p.name
)
def test_base_images_are_pinned_and_users_are_not_root(dockerfile: Path) -> None:
    steps = instructions(dockerfile)
    bases = [args for kw, args in steps if kw == "FROM"]
    assert bases, "no FROM"
    for base in bases:
        # A full version tag at least (a digest too where a registry is reachable).
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base), base
    users = [args for kw, args in steps if kw == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must end on a non-root USER"
    assert "useradd" in run_args(dockerfile)


def test_both_images_use_the_same_uid_for_the_shared_volume() -> None:
    uids = {
        tuple(re.findall(r"--uid (\d+)", run_args(p)))
        for p in (SERVICE_DOCKERFILE, INDEXER_DOCKERFILE)
    }
    assert len(uids) == 1 and len(next(iter(uids))) == 1 and uids != {("0",)}, uids


def test_service_image_installs_the_base_distribution_without_torch() -> None:
    installs = pip_installs(SERVICE_DOCKERFILE)
    assert installs, "the service image installs nothing"
    for args in installs:
        assert "[" not in args, f"the service image must not install extras: {args}"
        assert "torch" not in args and "onnxruntime-gpu" not in args
    # ...and the base distribution itself does not need torch or the exporter.
    base = " ".join(pyproject()["project"]["dependencies"])
    assert "torch" not in base and "onnx==" not in base and "onnxscript" not in base
    assert "onnxruntime==" in base  # what embeds queries with the snapshot's model.onnx


def test_indexer_image_takes_cpu_torch_at_the_pinned_version() -> None:
    extra = pyproject()["project"]["optional-dependencies"]["indexer"]
    torch_pin = next(req for req in extra if req.startswith("torch=="))
    installs = pip_installs(INDEXER_DOCKERFILE)
    torch_installs = [args for args in installs if "torch==" in args]
    assert torch_installs, "torch must be installed on its own, from the CPU index"
    assert all(torch_pin in args and "--index-url" in args for args in torch_installs)
    assert "download.pytorch.org/whl/cpu" in INDEXER_DOCKERFILE.read_text()
    assert any("[indexer]" in args for args in installs)


def test_dockerignore_keeps_what_the_images_copy() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "data", ".git"} <= ignored
    for dockerfile in (SERVICE_DOCKERFILE, INDEXER_DOCKERFILE):
        for kw, args in instructions(dockerfile):
            if kw == "COPY":
                for source in args.split()[:-1]:
                    assert source not in ignored, f"{dockerfile.name} copies ignored {source}"
                    assert (ROOT / source).exists(), f"{dockerfile.name} copies missing {source}"


# --- compose files -------------------------------------------------------------


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content(lines: list[str]) -> list[str]:
    return [ln.rstrip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def section(lines: list[str], *path: str) -> list[str]:
    """The lines nested under the mapping keys `path` (a sequence may sit at its
    key's own indentation, as YAML allows)."""
    lines = _content(lines)
    for key in path:
        top = min((_indent(ln) for ln in lines), default=0)
        start = next(
            (
                i
                for i, ln in enumerate(lines)
                if _indent(ln) == top and re.match(rf"\s*{re.escape(key)}:(\s|$)", ln)
            ),
            None,
        )
        assert start is not None, f"no {'.'.join(path)} in the compose file"
        depth = _indent(lines[start])
        body = []
        for ln in lines[start + 1 :]:
            if _indent(ln) > depth or (_indent(ln) == depth and ln.lstrip().startswith("- ")):
                body.append(ln)
            else:
                break
        inline = lines[start].split(":", 1)[1].strip()
        lines = [" " * (depth + 2) + inline, *body] if inline else body
    return lines


def scalar(lines: list[str], *path: str) -> str:
    (value,) = section(lines, *path)
    return value.strip().strip("\"'")


def items(lines: list[str], *path: str) -> list[str]:
    """A block sequence's scalar items, or a flow sequence's (JSON-style) items."""
    body = section(lines, *path)
    if len(body) == 1 and body[0].strip().startswith("["):
        value = json.loads(body[0])
        assert isinstance(value, list)
        return [str(v) for v in value]
    return [ln.strip()[2:].strip().strip("\"'") for ln in body if ln.strip().startswith("- ")]


@pytest.fixture(scope="module")
def compose() -> list[str]:
    return COMPOSE.read_text().splitlines()


def test_compose_services_build_their_dockerfiles(compose: list[str]) -> None:
    for name, dockerfile in (("indexer", INDEXER_DOCKERFILE), ("service", SERVICE_DOCKERFILE)):
        assert scalar(compose, "services", name, "build", "dockerfile") == str(
            dockerfile.relative_to(ROOT)
        )
        assert scalar(compose, "services", name, "build", "context") == "."


def test_service_port_is_published_on_the_host_loopback_only(compose: list[str]) -> None:
    ports = items(compose, "services", "service", "ports")
    assert ports
    for port in ports:
        assert port.startswith("127.0.0.1:") and port.endswith(":8000"), port
    command = items(compose, "services", "service", "command")
    assert command[:2] == ["pixscape", "serve"]
    # Inside the container it must listen on every interface, on the published port.
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert command[command.index("--port") + 1] == "8000"
    assert command[command.index("--data") + 1] == DATA
    assert exec_form(SERVICE_DOCKERFILE, "CMD") == command
    assert not any(ln.strip() == "ports:" for ln in section(compose, "services", "indexer"))


def test_indexer_runs_once_before_the_service(compose: list[str]) -> None:
    assert scalar(compose, "services", "indexer", "restart") == "no"
    condition = scalar(compose, "services", "service", "depends_on", "indexer", "condition")
    assert condition == "service_completed_successfully"
    command = items(compose, "services", "indexer", "command")
    assert command[:3] == ["pixscape", "index", IMAGES]
    assert command[command.index("--data") + 1] == DATA
    assert exec_form(INDEXER_DOCKERFILE, "CMD") == command


def test_volumes_are_shared_at_the_same_paths(compose: list[str]) -> None:
    # The manifest records the collection's absolute path: it must be the same in both.
    mounts = {
        name: {
            next(part for part in v.split(":") if part.startswith("/srv/")): v
            for v in items(compose, "services", name, "volumes")
        }
        for name in ("indexer", "service")
    }
    for name, by_target in mounts.items():
        assert by_target[IMAGES].endswith(f"{IMAGES}:ro"), f"{name}: the collection is read-only"
        assert by_target[DATA].startswith("pixscape-data:"), name
    assert section(compose, "volumes", "pixscape-data") == []


def healthcheck_code(argv: list[str]) -> str:
    assert argv[:3] == ["CMD", "python", "-c"] or argv[:2] == ["python", "-c"], argv
    code = argv[-1]
    assert "http://127.0.0.1:8000/api/health" in code
    return code


def test_healthcheck_is_the_same_in_the_image_and_the_compose_file(compose: list[str]) -> None:
    compose_code = healthcheck_code(items(compose, "services", "service", "healthcheck", "test"))
    image_code = healthcheck_code(exec_form(SERVICE_DOCKERFILE, "HEALTHCHECK"))
    assert compose_code == image_code


class _Health(BaseHTTPRequestHandler):
    status = "ok"

    def do_GET(self) -> None:  # the name http.server calls
        body = json.dumps({"status": self.status, "snapshot": None}).encode()
        self.send_response(200 if self.path == "/api/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: pytest shows stderr of failing tests


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_is_healthy_only_with_a_live_snapshot(
    compose: list[str], health_server: ThreadingHTTPServer
) -> None:
    code = healthcheck_code(items(compose, "services", "service", "healthcheck", "test"))
    port = health_server.server_address[1]
    probe = code.replace("127.0.0.1:8000", f"127.0.0.1:{port}")

    def exit_code(status: str) -> int:
        _Health.status = status
        return subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode

    try:
        assert exit_code("ok") == 0
        assert exit_code("no snapshot") != 0
    finally:
        _Health.status = "ok"
    health_server.shutdown()
    health_server.server_close()
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True).returncode != 0


def test_gpu_override_reserves_an_nvidia_gpu_for_the_indexer() -> None:
    gpu = COMPOSE_GPU.read_text().splitlines()
    assert scalar(gpu, "services", "indexer", "build", "args", "DEVICE") == "cuda"
    devices = section(gpu, "services", "indexer", "deploy", "resources", "reservations", "devices")
    assert any(ln.strip().lstrip("- ") == "driver: nvidia" for ln in devices)
    assert re.search(r"^ARG DEVICE=cpu$", INDEXER_DOCKERFILE.read_text(), re.M)
    services = [ln.strip() for ln in section(gpu, "services") if _indent(ln) == 2]
    assert services == ["indexer:"], "the service stays on the CPU"


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="Debian's docker-compose is not installed (scripts/test.sh installs it as root)",
)
@pytest.mark.parametrize(
    "files", [[COMPOSE], [COMPOSE, COMPOSE_GPU]], ids=["compose", "compose+gpu"]
)
def test_compose_accepts_the_files(files: list[Path]) -> None:
    argv = ["docker-compose"]
    for f in files:
        argv += ["-f", str(f)]
    done = subprocess.run(
        [*argv, "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
