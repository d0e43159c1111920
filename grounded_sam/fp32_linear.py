"""Which library runs the fast paths' float32 linears on this CPU: ATen (MKL) or oneDNN.

PyTorch's x86 wheels run a float32 ``F.linear`` as an MKL ``sgemm`` (plus a pass that writes
the bias, and one more for an activation). MKL picks its kernels by CPU vendor: on Intel
CPUs they are as fast as oneDNN's (measured on an AMX Xeon capped at AVX2, 4096 tokens of
SAM vit_b: 0.8-1.15x either way), but on AMD CPUs recent MKL releases fall back to generic
SSE code for ``sgemm`` (pytorch/builder#504). That is one reading of issue 11's AMD EPYC
figures: segment_anything's encoder at 44 GFLOP/s, and OpenVINO, which runs oneDNN's own
AVX2 GEMMs, 2.23x faster on the same encoder. oneDNN's fused linear
(``torch.ops.mkldnn._linear_pointwise``) also applies the bias and GELU/ReLU in its epilogue.

Rather than guess from the vendor, :func:`backend` measures: once per process it times one
(512 x 768) @ (768 x 3072) linear both ways, alternately, and takes oneDNN only when it is at
least :data:`PREFER_ONEDNN_AT` times faster. ``GROUNDED_SAM_FP32_LINEAR=aten|onednn`` fixes
the choice (and skips the probe). Both give the float32 product up to summation order
(relative error ~1e-7).
"""

from __future__ import annotations

import functools
import os
import time
from typing import TYPE_CHECKING, Any

from grounded_sam import runtime

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = [
    "FP32_LINEAR_ENV",
    "PREFER_ONEDNN_AT",
    "backend",
    "choose",
    "describe",
    "linear",
    "probe",
]

FP32_LINEAR_ENV = "GROUNDED_SAM_FP32_LINEAR"
BACKENDS = ("aten", "onednn")
# oneDNN must beat ATen by this much in the probe: a tie keeps ATen (the reference's GEMMs)
PREFER_ONEDNN_AT = 1.25
# act -> (oneDNN post-op, its algorithm)
_ACTIVATIONS = {None: ("none", ""), "gelu": ("gelu", "none"), "relu": ("relu", "")}


def probe(rows: int = 512, rounds: int = 3) -> dict[str, float]:
    """Seconds of one float32 (rows x 768) @ (768 x 3072) + bias linear per backend.

    Returns {"aten": s, "onednn": s} (the best of ``rounds``, taken alternately after one
    warm-up each); {"aten": s} alone where oneDNN's fused linear does not exist.
    """
    import torch

    op = runtime.mkldnn_linear_op()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 768, generator=g)
    w = torch.randn(3072, 768, generator=g) * 0.03
    b = torch.randn(3072, generator=g)
    runs: dict[str, Any] = {"aten": lambda: torch.nn.functional.linear(x, w, b)}
    if op is not None:
        runs["onednn"] = lambda: op(x, w, b, "none", [], "")
    best = {name: float("inf") for name in runs}
    with torch.inference_mode():
        for fn in runs.values():
            fn()
        for _ in range(rounds):
            for name, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                best[name] = min(best[name], time.perf_counter() - t0)
    return best


def backend() -> str:
    """ "aten" or "onednn": who runs the fast paths' float32 linears in this process.

    ``GROUNDED_SAM_FP32_LINEAR`` decides when set; else :func:`probe` (once per process,
    ~0.1-0.3 s): "onednn" when it is :data:`PREFER_ONEDNN_AT` times faster, else "aten".

    Raises:
        ValueError: the environment variable holds something other than "aten"/"onednn".
    """
    return _decision()[0]


def describe() -> str:
    """One line for ``grounded-sam info`` and benchmark headers: the choice and why."""
    name, times = _decision()
    lib = {"aten": "ATen/MKL", "onednn": "oneDNN"}[name]
    if times is None:
        why = f"set by {FP32_LINEAR_ENV}"
    elif "onednn" not in times:
        why = "no oneDNN fused linear in this torch"
    else:
        why = f"probe: oneDNN {times['aten'] / times['onednn']:.2f}x the speed of ATen/MKL"
    return f"fp32 linears: {lib} ({why})"


@functools.cache
def _decision() -> tuple[str, dict[str, float] | None]:
    forced = os.environ.get(FP32_LINEAR_ENV, "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise ValueError(
                f"{FP32_LINEAR_ENV} must be one of {', '.join(BACKENDS)} (or unset to measure), "
                f"got {forced!r}"
            )
        if forced == "onednn" and runtime.mkldnn_linear_op() is None:
            raise ValueError(
                f"{FP32_LINEAR_ENV}=onednn, but this torch build has no oneDNN fused linear "
                "(torch.ops.mkldnn._linear_pointwise): unset it or use aten"
            )
        return forced, None
    times = probe()
    return choose(times), times


def choose(times: dict[str, float]) -> str:
    """The backend for :func:`probe`'s ``times``: "onednn" only when it is present and at
    least :data:`PREFER_ONEDNN_AT` times faster than "aten"."""
    onednn = times.get("onednn")
    if onednn is not None and times["aten"] >= PREFER_ONEDNN_AT * onednn:
        return "onednn"
    return "aten"


def linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, act: str | None = None
) -> torch.Tensor:
    """``act(F.linear(x, weight, bias))`` in float32 on the CPU, by :func:`backend`.

    Args:
        x: (..., in) float32 CPU tensor; weight: (out, in); bias: (out,) or None.
        act: None, "gelu" (exact) or "relu".

    Returns:
        (..., out) float32. Elsewhere (other dtypes or devices, autograd on, inside a CPU
        autocast region, under ``torch.compile``) it is ``F.linear`` and the activation as
        separate ops.
    """
    import torch
    import torch.nn.functional as F

    if act not in _ACTIVATIONS:
        raise ValueError(f"act must be None, 'gelu' or 'relu', got {act!r}")
    eager_cpu = (
        x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        and runtime.cpu_autocast_dtype() is None
    )
    if eager_cpu and backend() == "onednn":
        attr, algo = _ACTIVATIONS[act]
        op = runtime.mkldnn_linear_op()
        return op(x.contiguous(), weight, bias, attr, [], algo)
    y = F.linear(x, weight, bias)
    if act == "gelu":
        return F.gelu(y)
    if act == "relu":
        return F.relu(y)
    return y
