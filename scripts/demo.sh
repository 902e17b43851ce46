#!/usr/bin/env bash
# Set up, index the sample collection in images/, and serve it (prints the URL).
set -euo pipefail
cd "$(dirname "$0")/.."
# Only what the demo needs: the base package and the indexer (no test tools, no Ray).
bash scripts/setup.sh indexer
.venv/bin/pixscape index images --data data
exec .venv/bin/pixscape serve --data data "$@"
