#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite: lint, types, layer contract, pytest.
# Services the tests need (pcscd + vpcd, PostgreSQL, Chromium) are started by the test
# fixtures and stopped after (one set per pytest-xdist worker).  Extra arguments go to pytest,
# after ours, so they win: `bash scripts/test.sh -n0` runs the tests in one process.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
bash scripts/setup.sh
echo "== ruff"
.venv/bin/ruff check .
echo "== mypy --strict"
.venv/bin/mypy
echo "== lint-imports (layer contract, docs/architecture.md)"
.venv/bin/lint-imports --no-cache --no-logo
# pytest-xdist workers: one more than the cores (CAS_TEST_WORKERS overrides).  Many of the
# slow tests mostly wait (sockets, crypto-periods, a box's dwell), so a third worker on two
# cores keeps both busy; each worker runs its own pcscd + vpcd, PostgreSQL and Chromium.
# --dist loadfile keeps a test file on one worker (its module fixtures are built once); the
# files are handed out longest first (tests/fixtures/order.py), not by their number of tests.
workers="${CAS_TEST_WORKERS:-$(( $(nproc) + 1 ))}"
echo "== pytest ($workers workers)"
set +e
.venv/bin/python -m pytest -n "$workers" --dist loadfile --no-loadscope-reorder "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests — that is a failure" >&2
  exit 1
fi
exit "$rc"
