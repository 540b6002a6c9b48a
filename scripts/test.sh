#!/usr/bin/env bash
# Lint, build the docs, then run the test suite (what CI runs). Sets up .venv first when it is missing or stale.
#   bash scripts/test.sh                      everything (unit and integration tests)
#   bash scripts/test.sh -m "not integration" any other pytest arguments pass through
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_dev.sh --if-needed
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mkdocs build --strict --quiet  # a broken link or a page left out of nav fails
.venv/bin/python -m pytest "$@"
