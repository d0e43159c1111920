#!/usr/bin/env bash
# Set up a virtual environment from scratch (idempotent) and run the whole test suite.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt setuptools wheel -e ".[app]"
# sam2 (the SAM 2.1 extra) ships only as source: build it against the torch just installed
# instead of in pip's isolated build environment, which would copy torch into it (minutes);
# its optional CUDA extension is not built.
SAM2_BUILD_CUDA=0 .venv/bin/python -m pip install -q -c constraints.txt --no-build-isolation \
    --no-deps "sam2>=1.1.0"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[app,dev]"
# The original Grounding DINO code, the reference of tests/test_models_grounding_dino_original.py:
# pure Python; its import-time deps are in the dev extra. --no-deps: it declares opencv-python,
# which would shadow opencv-python-headless (and needs libGL).
.venv/bin/python -m pip install -q --no-deps rf-groundingdino==0.3.0
# The consumers the exports are tested against (tests/test_export_yolo_ultralytics.py,
# tests/test_export_labelstudio.py). --no-deps: ultralytics declares opencv-python (see above;
# its other import-time deps are in the dev extra); label-studio-converter declares nltk and
# more, while the tests use only its brush codec (numpy + Pillow).
.venv/bin/python -m pip install -q --no-deps ultralytics==8.4.190 label-studio-converter==0.0.59
# The browser test drives Debian's headless Chromium; install it when we can (root, apt).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) \
        >/dev/null 2>&1 || echo "warning: could not install chromium; the browser test will fail" >&2
fi
# pytest's exit code 5 means it collected no tests: a failure here, never a silent pass.
run_pytest() {
    set +e
    "$@"
    local rc=$?
    set -e
    if [ "$rc" = 5 ]; then
        echo "error: pytest collected no tests" >&2
        return 1
    fi
    return "$rc"
}
rc=0
run_pytest .venv/bin/python -m pytest "$@" || rc=$?
# The fast paths pick their kernels by CPU (bf16 on AMX/AVX512-BF16, fp32 elsewhere). On a
# CPU with more than AVX2, run the tests that depend on that again capped at AVX2, as an
# AVX2-only CPU (e.g. AMD EPYC) runs them, so a change made on one kind of machine cannot
# break the other unseen. Only for the whole suite (no pytest arguments given).
if [ $# -eq 0 ] && grep -qwE 'avx512f|amx_bf16' /proc/cpuinfo 2>/dev/null; then
    echo "== again capped at AVX2 (ONEDNN_MAX_CPU_ISA=AVX2): tests marked cpu_kind =="
    # the same variables as grounded_sam.runtime.AVX2_CAP_ENV (tests/test_runtime.py checks);
    # fp32 linears through oneDNN, as on a CPU where MKL's sgemm loses the probe (AMD; see
    # grounded_sam/fp32_linear.py): the main pass here takes ATen/MKL, so both are run
    run_pytest env ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        FBGEMM_ENABLE_INSTRUCTIONS=AVX2 GROUNDED_SAM_FP32_LINEAR=onednn \
        .venv/bin/python -m pytest -m cpu_kind -p no:cacheprovider || rc=$?
fi
exit "$rc"
