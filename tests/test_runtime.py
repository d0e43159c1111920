"""grounded_sam.runtime: dtype settings, GROUNDED_SAM_FORCE_FP32, CPU flags, malloc tuning."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

from grounded_sam import runtime

pytestmark = pytest.mark.cpu_kind  # run again under an AVX2 cap (scripts/test.sh)

torch.set_num_threads(2)


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        (None, None),
        ("auto", None),
        ("fp32", torch.float32),
        ("torch.float32", torch.float32),
        ("BF16", torch.bfloat16),
        (torch.bfloat16, torch.bfloat16),
        ("half", torch.float16),
    ],
)
def test_parse_dtype(spelling, expected):
    assert runtime.parse_dtype(spelling) is expected


@pytest.mark.parametrize("bad", ["int8", torch.int32, 3])
def test_parse_dtype_rejects_with_the_accepted_spellings(bad):
    with pytest.raises(ValueError, match="dtype"):
        runtime.parse_dtype(bad)


def test_resolve_compute_dtype(monkeypatch):
    monkeypatch.delenv(runtime.FORCE_FP32_ENV, raising=False)
    auto = torch.bfloat16 if runtime.cpu_has_fast_bf16() else torch.float32
    assert runtime.resolve_compute_dtype(None, "cpu") is auto
    assert runtime.resolve_compute_dtype("fp16", "cpu") is torch.float16
    assert runtime.resolve_compute_dtype(None, "meta") is torch.float32
    for value in ("1", "true", "ON"):
        monkeypatch.setenv(runtime.FORCE_FP32_ENV, value)
        assert runtime.force_fp32()
        assert runtime.resolve_compute_dtype("bf16", "cpu") is torch.float32
    monkeypatch.setenv(runtime.FORCE_FP32_ENV, "no")
    assert not runtime.force_fp32()


def test_cpu_flags_agree_with_torch():
    flags = runtime.cpu_flags()
    caps = torch.cpu.get_capabilities()
    hardware = bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))
    if flags:  # Linux: /proc/cpuinfo is the source, and torch's probe agrees with it
        assert ("avx512_bf16" in flags) == bool(caps.get("avx512_bf16"))
        hardware = bool({"amx_bf16", "avx512_bf16"} & flags)
    # fast bf16 = the hardware has it and oneDNN may use it (ONEDNN_MAX_CPU_ISA can say no)
    assert runtime.cpu_has_fast_bf16() == (hardware and runtime.onednn_bf16_kernels())


def _fused_bf16_gemm_runs() -> bool:
    x = torch.randn(4, 32).bfloat16()
    w = torch.randn(8, 32).bfloat16()
    try:
        torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")
    except RuntimeError as e:
        assert "primitive descriptor" in str(e)
        return False
    return True


def test_onednn_bf16_probe_says_whether_a_fused_bf16_gemm_runs():
    """The probe is the truth the fast paths rely on: where it says no, the op would fail."""
    assert runtime.onednn_bf16_kernels() == _fused_bf16_gemm_runs()
    if runtime.onednn_bf16_kernels():
        assert runtime.fused_bf16_linear_op() is runtime.mkldnn_linear_op()
    else:
        assert runtime.fused_bf16_linear_op() is None


def test_bf16_asked_for_without_bf16_kernels_warns_and_auto_does_not(monkeypatch):
    import warnings

    monkeypatch.delenv(runtime.FORCE_FP32_ENV, raising=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        runtime.warn_if_bf16_is_emulated("bf16")
        runtime.warn_if_bf16_is_emulated(None)
        runtime.warn_if_bf16_is_emulated("fp32")
        runtime.warn_if_bf16_is_emulated("bf16", "meta")
    if runtime.cpu_has_fast_bf16():
        assert not seen and runtime.missing_bf16_reason() == ""
    else:
        assert len(seen) == 1 and issubclass(seen[0].category, RuntimeWarning)
        message = str(seen[0].message)
        assert runtime.missing_bf16_reason() in message and "dtype='auto'" in message


def test_cpu_summary_names_the_cpu_and_what_fast_picks(monkeypatch):
    monkeypatch.delenv(runtime.FORCE_FP32_ENV, raising=False)
    summary = runtime.cpu_summary()
    assert summary["model"] and summary["cores"] >= 1
    assert set(summary["isa"]) == set(runtime.ISA_FLAGS)
    if runtime.cpu_flags():
        assert summary["isa"]["avx2"] == ("avx2" in runtime.cpu_flags())
    expected = "bfloat16" if runtime.cpu_has_fast_bf16() else "float32"
    assert summary["fast_dtype"] == expected
    lines = runtime.cpu_lines()
    assert lines[0].startswith(f"cpu: {summary['model']}")
    assert f"fast: {expected}" in lines[2]


def test_an_isa_cap_turns_bf16_off_in_a_fresh_process():
    """What CI's second pass relies on: ONEDNN_MAX_CPU_ISA=AVX2 makes any CPU an AVX2 one."""
    import os

    code = (
        "from grounded_sam import runtime; import torch;"
        "print(runtime.onednn_bf16_kernels(), runtime.cpu_has_fast_bf16(),"
        " runtime.resolve_compute_dtype(None, 'cpu'));"
        "print(runtime.cpu_lines()[2])"
    )
    env = {k: v for k, v in os.environ.items() if k != runtime.FORCE_FP32_ENV}
    env.update(ONEDNN_MAX_CPU_ISA="AVX2", ATEN_CPU_CAPABILITY="avx2")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout.splitlines()
    assert out[0] == "False False torch.float32"
    assert out[1].startswith("fast: float32 (")


def test_ci_second_pass_caps_every_kernel_library():
    """scripts/test.sh's AVX2 pass sets every variable of runtime.AVX2_CAP_ENV, as written."""
    from pathlib import Path

    script = (Path(__file__).parents[1] / "scripts" / "test.sh").read_text()
    capped = script[script.index("again capped at AVX2") :]
    for key, value in runtime.AVX2_CAP_ENV.items():
        assert f"{key}={value}" in capped, key
    assert set(runtime.ISA_LIMIT_ENV) == set(runtime.AVX2_CAP_ENV)


def test_malloc_tuned(monkeypatch):
    for key in runtime.MALLOC_ENV:
        monkeypatch.delenv(key, raising=False)
    assert not runtime.malloc_tuned()
    for key, value in runtime.malloc_env().items():
        monkeypatch.setenv(key, value)
    assert runtime.malloc_tuned()


def test_tune_malloc_applies_in_a_fresh_process():
    code = "from grounded_sam import runtime; print(runtime.tune_malloc())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert out.stdout.strip() == str(glibc)
