#!/usr/bin/env bash
# Full CI: a fresh virtual environment, then exactly the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
# shellcheck disable=SC1091
source .venv/bin/activate
python -m pip install --quiet --upgrade pip
export HYPOTHESIS_PROFILE=ci
# The README's test command, verbatim:
python -m pip install -e '.[test]' && python -m pytest
