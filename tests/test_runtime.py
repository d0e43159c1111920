"""grounded_sam.runtime: dtype settings, GROUNDED_SAM_FORCE_FP32, CPU flags, malloc tuning."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

from grounded_sam import runtime

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
    torch_says = bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))
    if flags:  # Linux: /proc/cpuinfo is the source, and torch's probe agrees with it
        assert ("avx512_bf16" in flags) == bool(caps.get("avx512_bf16"))
        assert runtime.cpu_has_fast_bf16() == bool({"amx_bf16", "avx512_bf16"} & flags)
    assert runtime.cpu_has_fast_bf16() == torch_says


def test_malloc_advice(monkeypatch):
    for key in runtime.MALLOC_ENV:
        monkeypatch.delenv(key, raising=False)
    assert not runtime.malloc_tuned()
    assert "MALLOC_MMAP_MAX_=0" in runtime.malloc_advice()
    for key, value in runtime.malloc_env().items():
        monkeypatch.setenv(key, value)
    assert runtime.malloc_tuned()
    assert runtime.malloc_advice() == ""


def test_tune_malloc_applies_in_a_fresh_process():
    code = "from grounded_sam import runtime; print(runtime.tune_malloc())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert out.stdout.strip() == str(glibc)
