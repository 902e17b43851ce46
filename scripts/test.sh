#!/usr/bin/env bash
# Set up, lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The browser tests need a real Chromium: Debian's, from the package registry.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq chromium
fi
.venv/bin/ruff check indexer service tests bench
.venv/bin/ruff format --check indexer service tests bench
.venv/bin/mypy indexer service
.venv/bin/python -m pytest "$@"
