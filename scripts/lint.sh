#!/bin/sh
# The lint step (`make lint`, inside the test image): style, the layering contracts, types.
# Run from the repository root (the test image's /app); each tool reads pyproject.toml.
set -eu
cd "$(dirname "$0")/.."
echo "ruff:" && ruff check services tests loadtest examples scripts/env_example.py
echo "import-linter:" && PYTHONPATH=services:examples/notes lint-imports --no-cache pyproject.toml
echo "mypy (protocol, app, dispatch, hubs, doors, probes):" && mypy
echo "mypy (the notes example, examples/notes):" && MYPYPATH=examples/notes mypy -p notes
