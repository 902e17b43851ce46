#!/usr/bin/env bash
# Create .venv and install pixscape with the extras named in $1 (idempotent).
#   bash scripts/setup.sh indexer            # the demo: index and serve
#   bash scripts/setup.sh indexer,dev,ray    # the tests (the default)
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=${1:-indexer,dev,ray}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch==2.13.0 (pinned in pyproject.toml) is the CPU build; see DESIGN.md.
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-compile -e ".[$EXTRAS]"
