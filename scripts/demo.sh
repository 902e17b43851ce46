#!/usr/bin/env bash
# Set up, index the sample collection in images/, and serve it (prints the URL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/pixscape index images --data data
exec .venv/bin/pixscape serve --data data "$@"
