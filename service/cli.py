"""The `pixscape` command: `index` (the indexer's CLI) and `serve`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from indexer.cli import add_index_parser


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .app import create_app
    from .settings import Settings

    overrides = {"data_dir": args.data, "host": args.host, "port": args.port}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    app = create_app(settings)
    print(
        f"pixscape: serving {settings.data_dir} at http://{settings.host}:{settings.port}/"
        f"  (API docs: http://{settings.host}:{settings.port}/docs)",
        flush=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pixscape", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_index_parser(sub)
    serve = sub.add_parser("serve", help="serve the published snapshot over HTTP")
    serve.add_argument("--data", type=Path, default=None, help="data folder (default: data/)")
    serve.add_argument("--host", default=None, help="default 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default 8000")
    serve.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
