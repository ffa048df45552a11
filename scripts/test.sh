#!/usr/bin/env bash
# The test command (CI runs exactly this): a fresh .venv with the project and its test tools, then lint,
# type checks and the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python.sh
make_venv
.venv/bin/python -m pip install -q -e '.[dev]'
.venv/bin/ruff check moorage tests examples bench
.venv/bin/ruff format --check moorage tests examples bench
.venv/bin/mypy
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
