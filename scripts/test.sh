#!/usr/bin/env bash
# Set up, lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh indexer,dev,ray
# The browser tests need a real Chromium: Debian's, from the package registry.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq chromium
fi
# The compose files are checked with Debian's docker-compose (a validator here:
# these machines have a docker client but no engine and no compose plugin).
if ! command -v docker-compose >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq docker-compose
fi
if command -v docker-compose >/dev/null 2>&1; then
  docker-compose -f docker-compose.yml config -q
  docker-compose -f docker-compose.yml -f docker-compose.gpu.yml config -q
else
  echo "scripts/test.sh: docker-compose not found and not root to apt-get it:" \
    "skipping the compose file check (apt-get install docker-compose)" >&2
fi
.venv/bin/ruff check indexer service tests bench
.venv/bin/ruff format --check indexer service tests bench
.venv/bin/mypy indexer service
.venv/bin/python -m pytest "$@"
