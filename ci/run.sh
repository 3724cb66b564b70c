#!/usr/bin/env bash
# Full CI: a fresh virtual environment, exactly the README's test command, then the longer
# checks that do not belong in a developer's default run.
set -euo pipefail
cd "$(dirname "$0")/.."
stage() { printf '\n=== %s (%s) ===\n' "$1" "$(date -u +%H:%M:%S)"; }

stage "environment"
python3 -m venv .venv
# shellcheck disable=SC1091
source .venv/bin/activate
python -m pip install --quiet --upgrade pip
export HYPOTHESIS_PROFILE=ci

stage "README test command"
python -m pip install -e '.[test]' && python -m pytest

stage "self-tests: fault-injected builds, isolation, campaigns (pytest -m slow)"
python -m pytest -m slow

stage "property suite on the address+undefined sanitizer build"
python -m pytest -q tests/kernels/test_properties.py tests/test_regressions.py --iq1m-variant asan

stage "property suite on the thread sanitizer build"
python -m pytest -q tests/kernels/test_properties.py tests/test_regressions.py --iq1m-variant tsan

stage "activation accuracy over all 2^32 float32 inputs"
IQ1M_ACT_FULL=1 python -m pytest -q tests/kernels/test_c_programs.py -k activation_accuracy
