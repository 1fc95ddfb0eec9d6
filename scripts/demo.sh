#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the end-to-end demo on the embedded defaults
# (SQLite file in ./demo-data, in-process card).  Extra arguments go to `cas demo`.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
bash scripts/setup.sh
exec .venv/bin/cas demo --data-dir "${CAS_DEMO_DIR:-demo-data}" "$@"
