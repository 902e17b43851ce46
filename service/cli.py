"""The `pixscape` command: `index` (the indexer's CLI) and `serve`."""

from __future__ import annotations

import argparse
import errno
import logging
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from indexer.cli import add_index_parser

# uvicorn's limits, each set on purpose rather than left to its defaults:
# A keep-alive connection idle this long is closed: long enough for the page's
# bursts of thumbnail requests to reuse one, short enough that idle ones do not
# pile up against LIMIT_CONCURRENCY.
KEEP_ALIVE_S = 5
# The request line and headers together (h11 buffers them before the app sees the
# request; past this the client gets 400). Our requests carry a key and a cookie
# at most: 16 KiB is generous and bounds what each connection buffers.
MAX_HEADER_BYTES = 16 * 1024
# Connections the kernel holds for us before they are accepted: a burst of clients
# (the page opens several at once, a load test 40) waits there instead of having
# its SYNs dropped and retried a second later.
BACKLOG = 2048
# Connections and requests at once; past it uvicorn answers a bare 503 and closes.
# A last resort only (deps.Pool refuses work long before, with Retry-After): it
# bounds memory (each request buffers at most ~1 MiB of its body before Starlette
# spools to disk) and stays well under the open-file limit.
LIMIT_CONCURRENCY = 512


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, bound here so that the URL we print is true."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As uvicorn does: a restart may reuse the port while old connections linger.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)  # connections made from now on wait for the server
    except BaseException:
        sock.close()
        raise
    return sock


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .settings import Settings

    overrides = {"data_dir": args.data, "host": args.host, "port": args.port}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    try:
        sock = _bind(settings.host, settings.port)
    except OSError as exc:
        where = f"{settings.host}:{settings.port}"
        if exc.errno == errno.EADDRINUSE:
            reason = f"port {settings.port} is already in use on {settings.host}"
        else:
            reason = f"cannot listen on {where}: {exc.strerror or exc}"
        print(f"pixscape: {reason}; pick another with --port N", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    with sock:
        config = uvicorn.Config(
            create_app(settings),
            log_level="warning",
            http="h11",  # the limits below are h11's: never another parser by what is installed
            timeout_keep_alive=KEEP_ALIVE_S,
            h11_max_incomplete_event_size=MAX_HEADER_BYTES,
            backlog=BACKLOG,
            limit_concurrency=LIMIT_CONCURRENCY,
        )
        base = _url(settings.host, sock.getsockname()[1])  # the real port, also for --port 0
        print(
            f"pixscape: serving {settings.data_dir} at {base}/  (API docs: {base}/docs)", flush=True
        )
        uvicorn.Server(config).run(sockets=[sock])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pixscape", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_index_parser(sub)
    serve = sub.add_parser("serve", help="serve the published snapshot over HTTP")
    serve.add_argument("--data", type=Path, default=None, help="data folder (default: data/)")
    serve.add_argument("--host", default=None, help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default 8000; 0 picks a free one")
    serve.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
