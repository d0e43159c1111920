#!/usr/bin/env bash
# Run the web demo: create .venv if missing, install the package with the app extra, start
# app.py (http://127.0.0.1:7860 by default). On the first run the app fetches the default
# checkpoints (SAM ViT-B, Grounding DINO tiny) into models/; offline, the page still starts
# and says what is missing and how to fetch it.
# Usage: bash scripts/run.sh [--port 7860] [--host 127.0.0.1] [--share] [--tiny-random] ...
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[app]"
export GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python app.py "$@"
