"""What this machine can do fast, and the settings that choose a compute dtype.

Everything here is read when called, never at import: ``GROUNDED_SAM_FORCE_FP32`` can be
flipped between two calls, and importing this module touches neither torch nor ``/proc``.

- :func:`force_fp32` -- the numerical-safety switch (``GROUNDED_SAM_FORCE_FP32=1``).
- :func:`cpu_flags` / :func:`cpu_has_fast_bf16` -- does this CPU run bfloat16 matmuls in
  hardware (AMX or AVX512-BF16)? Without it bf16 is emulated and slower than fp32.
- :func:`resolve_compute_dtype` -- turns a user's ``dtype`` setting (``None``/"auto",
  "bf16", "fp16", "fp32" or a ``torch.dtype``) into the dtype to run on a given device.
- :func:`malloc_env` / :func:`malloc_advice` -- glibc malloc settings that stop the
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


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """True when bfloat16 matmuls run in hardware on this CPU (AMX-BF16 or AVX512-BF16).

    Reads ``/proc/cpuinfo``; where that is missing (macOS, Windows) asks torch's own CPU
    capability probe. Apple silicon and older x86 return False: bf16 is emulated there.
    """
    flags = cpu_flags()
    if flags:
        return bool({"amx_bf16", "avx512_bf16"} & flags)
    try:
        import torch

        caps: dict[str, Any] = torch.cpu.get_capabilities()  # type: ignore[attr-defined]
    except Exception:
        return False
    return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))


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


def malloc_advice() -> str:
    """One line a CLI can print: the shell prefix that tunes malloc, or '' when already set."""
    if malloc_tuned():
        return ""
    prefix = " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items())
    return (
        f"tip: start the process as `{prefix} python ...` so glibc keeps freed activation "
        "buffers instead of unmapping them after every layer (see benchmarks/README.md)"
    )


def describe() -> str:
    """A one-line summary of the runtime for benchmark headers and bug reports."""
    import torch

    return (
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"cpu bf16 {'hardware' if cpu_has_fast_bf16() else 'emulated'}, "
        f"force_fp32={force_fp32()}, malloc tuned={malloc_tuned()}"
    )
