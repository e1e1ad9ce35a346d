#!/bin/sh
# The lint step (`make lint`, inside the test image): style, the layering contracts, types.
# Run from the repository root (the test image's /app); each tool reads pyproject.toml.
set -eu
cd "$(dirname "$0")/.."
echo "ruff:" && ruff check services tests loadtest
echo "import-linter:" && PYTHONPATH=services lint-imports --no-cache pyproject.toml
echo "mypy (protocol, app, dispatch, doors, probes):" && mypy
