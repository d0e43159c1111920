#!/usr/bin/env bash
# Set up a virtual environment from scratch (idempotent) and run the whole test suite.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[app,dev]"
# The original Grounding DINO code, the reference of tests/test_models_grounding_dino_original.py:
# pure Python; its import-time deps are in the dev extra. --no-deps: it declares opencv-python,
# which would shadow opencv-python-headless (and needs libGL).
.venv/bin/python -m pip install -q --no-deps rf-groundingdino==0.3.0
# The browser test drives Debian's headless Chromium; install it when we can (root, apt).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
        >/dev/null 2>&1 || echo "warning: could not install chromium; the browser test will fail" >&2
fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
    echo "error: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
