#!/usr/bin/env bash
# Create .venv and install pixscape with the indexer and test extras (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# torch==2.13.0 (pinned in pyproject.toml) is the CPU build; see DESIGN.md.
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[indexer,dev,ray]"
