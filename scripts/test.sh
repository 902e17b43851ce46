#!/usr/bin/env bash
# Set up, lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check indexer service tests bench
.venv/bin/ruff format --check indexer service tests bench
.venv/bin/mypy indexer service
.venv/bin/python -m pytest "$@"
