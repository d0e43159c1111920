"""What this machine can do fast, and the settings that choose a compute dtype.

Everything here is read when called, never at import: ``GROUNDED_SAM_FORCE_FP32`` can be
flipped between two calls, and importing this module touches neither torch nor ``/proc``.

- :func:`force_fp32` -- the numerical-safety switch (``GROUNDED_SAM_FORCE_FP32=1``).
- :func:`cpu_flags` / :func:`cpu_has_fast_bf16` -- does this CPU run bfloat16 matmuls in
  hardware (AMX or AVX512-BF16), and may oneDNN use them (:func:`onednn_bf16_kernels`)?
  Without them bf16 is emulated and slower than fp32, and fused oneDNN bf16 linears do not
  exist at all: :func:`fused_bf16_linear_op` is then None.
- :func:`cpu_summary` / :func:`cpu_lines` -- CPU model, instruction sets and what ``fast``
  picks, for ``grounded-sam info`` and benchmark headers.
- :func:`resolve_compute_dtype` -- turns a user's ``dtype`` setting (``None``/"auto",
  "bf16", "fp16", "fp32" or a ``torch.dtype``) into the dtype to run on a given device.
- :func:`malloc_env` / :func:`malloc_tuned` -- glibc malloc settings that stop the
  allocator from returning big activation buffers to the kernel after every layer. As
  environment variables they only take effect when set before the process starts;
  :func:`tune_malloc` applies the same settings to a running process through ``mallopt``.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORCE_FP32_ENV = "GROUNDED_SAM_FORCE_FP32"
_TRUE = {"1", "true", "yes", "on"}

# glibc: never serve large blocks with mmap (which is unmapped and page-faulted afresh on
# every allocation) and never trim the heap top; freed activation buffers are reused.
MALLOC_ENV: dict[str, str] = {
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": str(1 << 40),
}

# spellings of the compute dtypes, shared by every dtype setting of the package
DTYPE_NAMES = {
    "fp32": "float32",
    "float32": "float32",
    "float": "float32",
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "half": "float16",
}


def force_fp32() -> bool:
    """True when ``GROUNDED_SAM_FORCE_FP32`` is set to 1/true/yes/on (read on every call)."""
    return os.environ.get(FORCE_FP32_ENV, "").strip().lower() in _TRUE


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is no such file)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


# The instruction sets that decide which kernels run, in the order a reader compares CPUs.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
# How to run as an AVX2-only CPU (an AMD EPYC without AVX-512) would on a bigger one: each
# kernel library PyTorch uses has its own switch (oneDNN: GEMMs, convolutions, bf16; ATen: its
# vectorised ops; MKL: BLAS; FBGEMM: dynamic int8 linears). scripts/test.sh's second pass sets
# exactly these (tests/test_runtime.py checks that it does).
AVX2_CAP_ENV = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2",
}
ISA_LIMIT_ENV = tuple(AVX2_CAP_ENV)


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC 7B13", ...) from ``/proc/cpuinfo``, else platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown CPU"


@functools.lru_cache(maxsize=1)
def onednn_bf16_kernels() -> bool:
    """True when oneDNN (PyTorch's CPU GEMM library) can run bfloat16 GEMMs here.

    Asks oneDNN itself, so the answer follows both the hardware and ``ONEDNN_MAX_CPU_ISA``
    (an AMX machine capped at AVX2 answers False, as an AVX2-only CPU does). Where it says
    False, a fused oneDNN bf16 linear fails with "could not create a primitive descriptor",
    so none is ever run; plain bf16 ops still work through ATen's generic kernels.
    """
    import torch

    if not torch.backends.mkldnn.is_available():
        return False
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if check is not None:
        try:
            return bool(check())
        except RuntimeError:
            return False
    op = mkldnn_linear_op()  # older torch: try one tiny GEMM
    if op is None:
        return False
    x = torch.ones(2, 16, dtype=torch.bfloat16)
    try:
        op(x, torch.ones(16, 16, dtype=torch.bfloat16), None, "none", [], "")
    except RuntimeError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when bfloat16 matmuls run in hardware on this CPU (AMX-BF16 or AVX512-BF16)
    and oneDNN may use them (not capped by ``ONEDNN_MAX_CPU_ISA``).

    Reads ``/proc/cpuinfo``; where that is missing (macOS, Windows) asks torch's own CPU
    capability probe. Apple silicon and older x86 return False: bf16 is emulated there.
    """
    flags = cpu_flags()
    if flags:
        hardware = bool({"amx_bf16", "avx512_bf16"} & flags)
    else:
        try:
            import torch

            caps: dict[str, Any] = torch.cpu.get_capabilities()  # type: ignore[attr-defined]
        except Exception:
            return False
        hardware = bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))
    return hardware and onednn_bf16_kernels()


def missing_bf16_reason() -> str:
    """Why bf16 is slow on this CPU ('' when it is fast), for warnings and ``info``."""
    if cpu_has_fast_bf16():
        return ""
    flags = cpu_flags()
    if flags and {"amx_bf16", "avx512_bf16"} & flags:
        limits = ", ".join(f"{k}={os.environ[k]}" for k in ISA_LIMIT_ENV if os.environ.get(k))
        return f"oneDNN's bf16 kernels are off here: {limits or 'oneDNN reports none'}"
    return f"{cpu_model()} has neither AMX-BF16 nor AVX512-BF16"


def warn_if_bf16_is_emulated(dtype: Any, device: Any = "cpu") -> None:
    """Warn (once per call site) when ``dtype`` asks for bf16 on a CPU without bf16 kernels.

    That still runs, correctly: bf16 autocast falls back to ATen's generic kernels (no
    fused oneDNN linears), several times slower than fp32. ``dtype=None``/"auto" never
    warns: it picks fp32 on such CPUs.
    """
    import warnings

    import torch

    if torch.device(device).type != "cpu" or force_fp32():
        return
    if parse_dtype(dtype) is torch.bfloat16 and not cpu_has_fast_bf16():
        warnings.warn(
            f"bf16 was asked for, but {missing_bf16_reason()}: it runs on generic kernels, "
            "slower than fp32. Use dtype='auto' (or 'fp32', GROUNDED_SAM_FORCE_FP32=1) on "
            "this CPU.",
            RuntimeWarning,
            stacklevel=3,
        )


def cpu_summary() -> dict[str, Any]:
    """The CPU facts a speed figure or a bug report needs: model, cores, ISA, kernels.

    Keys: ``model`` (str), ``cores`` (logical CPUs), ``isa`` ({flag: bool} for
    :data:`ISA_FLAGS`), ``isa_limits`` ({env var: value} of :data:`ISA_LIMIT_ENV` that are
    set), ``aten_capability`` (the vector ISA ATen's kernels use), ``onednn_bf16`` (bool),
    ``fast_bf16`` (bool) and ``fast_dtype`` ("bfloat16"/"float32": what ``fast`` computes in
    on this CPU).
    """
    import torch

    flags = cpu_flags()
    try:
        aten = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # pragma: no cover - torch < 2.1
        aten = "unknown"
    return {
        "model": cpu_model(),
        "cores": os.cpu_count() or 1,
        "isa": {f: f in flags for f in ISA_FLAGS},
        "isa_limits": {k: os.environ[k] for k in ISA_LIMIT_ENV if os.environ.get(k)},
        "aten_capability": aten,
        "onednn_bf16": onednn_bf16_kernels(),
        "fast_bf16": cpu_has_fast_bf16(),
        "fast_dtype": str(resolve_compute_dtype(None, "cpu")).removeprefix("torch."),
    }


def cpu_lines() -> list[str]:
    """:func:`cpu_summary` as the lines ``grounded-sam info`` and benchmark headers print."""
    s = cpu_summary()
    isa = " ".join(f"{k}{'+' if v else '-'}" for k, v in s["isa"].items())
    limits = " ".join(f"{k}={v}" for k, v in s["isa_limits"].items())
    why = missing_bf16_reason()
    fast = (
        "fast: bfloat16 (hardware bf16, fused oneDNN linears)"
        if s["fast_bf16"]
        else f"fast: float32 ({why}; bf16 would be emulated)"
    )
    from grounded_sam import fp32_linear  # imports this module

    return [
        f"cpu: {s['model']}, {s['cores']} logical cores",
        f"isa: {isa}; ATen kernels {s['aten_capability']}"
        + (f"; limited by {limits}" if limits else ""),
        fast + ("; GROUNDED_SAM_FORCE_FP32=1" if force_fp32() else ""),
        fp32_linear.describe(),
    ]


def parse_dtype(dtype: Any) -> torch.dtype | None:
    """``None``/"auto" -> None; "bf16"/"bfloat16"/``torch.bfloat16`` etc. -> a ``torch.dtype``.

    Raises ValueError naming the accepted spellings for anything else.
    """
    import torch

    if dtype is None or isinstance(dtype, torch.dtype):
        if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype}")
        return dtype
    if isinstance(dtype, str):
        key = dtype.strip().lower().removeprefix("torch.")
        if key == "auto":
            return None
        if key in DTYPE_NAMES:
            return getattr(torch, DTYPE_NAMES[key])
    raise ValueError(
        f"dtype must be None/'auto', 'fp32', 'bf16', 'fp16' or a torch dtype, got {dtype!r}"
    )


def resolve_compute_dtype(dtype: Any, device: torch.device | str) -> torch.dtype:
    """The dtype to run matmuls in on ``device`` for the setting ``dtype``.

    ``GROUNDED_SAM_FORCE_FP32=1`` wins over everything. ``None``/"auto" means: bfloat16 on
    CPUs with hardware bf16 and float32 on other CPUs; on CUDA bfloat16 where supported,
    else float16; float32 elsewhere. An explicit dtype is honoured as given.
    """
    import torch

    if force_fp32():
        return torch.float32
    wanted = parse_dtype(dtype)
    if wanted is not None:
        return wanted
    kind = torch.device(device).type
    if kind == "cpu":
        return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def cpu_autocast_dtype() -> torch.dtype | None:
    """The dtype of an active CPU autocast region, else None."""
    import torch

    try:
        if torch.is_autocast_enabled("cpu"):
            return torch.get_autocast_dtype("cpu")
    except TypeError:  # torch < 2.4
        if torch.is_autocast_cpu_enabled():
            return torch.get_autocast_cpu_dtype()
    return None


def fused_bf16_linear_op() -> Any:
    """:func:`mkldnn_linear_op` where oneDNN has bf16 kernels on this CPU, else None."""
    return mkldnn_linear_op() if onednn_bf16_kernels() else None


@functools.cache
def mkldnn_linear_op() -> Any:
    """oneDNN's fused linear (``torch.ops.mkldnn._linear_pointwise``), or None where absent."""
    import torch

    ops = getattr(torch.ops, "mkldnn", None)
    if ops is None or not torch.backends.mkldnn.is_available():
        return None
    try:
        return ops._linear_pointwise
    except (AttributeError, RuntimeError):
        return None


def malloc_env() -> dict[str, str]:
    """The glibc malloc environment variables that help large-activation CPU inference."""
    return dict(MALLOC_ENV)


# glibc's malloc.h parameter numbers for mallopt()
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def tune_malloc() -> bool:
    """Apply :data:`MALLOC_ENV` to this running process with glibc's ``mallopt``.

    Large freed buffers then stay in the heap and are reused by the next layer instead of
    being unmapped and page-faulted in again. The price: the process keeps its peak memory
    until it exits. Explicit and process-wide -- call it from a program's ``main``, never
    from a library import. Returns False where it cannot apply (not Linux, not glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt takes an int: 2 GiB is the largest trim threshold it can express
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def malloc_tuned() -> bool:
    """True when this process was started with every variable of :func:`malloc_env` set."""
    return all(os.environ.get(k) == v for k, v in MALLOC_ENV.items())


def describe() -> str:
    """A one-line summary of the runtime for benchmark headers and bug reports."""
    import torch

    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"cpu bf16 {'hardware' if cpu_has_fast_bf16() else 'emulated'}, "
        f"force_fp32={force_fp32()}, malloc tuned={malloc_tuned()}"
    )
