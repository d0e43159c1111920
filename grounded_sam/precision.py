"""One precision setting for every model: ``"exact"``, ``"fast"``, ``"fast-bf16"`` …

========================  =====================================================================
``precision``             what runs
========================  =====================================================================
``"exact"`` (default)     the original models' float32 arithmetic, bit for bit
``"fast"``                the optimised paths (``fast_sam``, ``fast_decoder``,
                          ``fast_grounding_dino``) in the dtype the hardware runs fastest:
                          bfloat16 on CPUs with AMX / AVX512-BF16, float32 on other CPUs; on a
                          GPU only SAM's image encoder is swapped (bf16, else fp16).
                          ``GROUNDED_SAM_FORCE_FP32=1`` forces float32.
``"fast-fp32"``           the optimised paths in float32 (closest to exact)
``"fast-bf16"``           the optimised paths in bfloat16 (slow on CPUs without bf16 kernels:
                          a warning says so)
``"fast-fp16"``           the optimised paths in float16 (GPUs)
``"autocast-bf16"``       the exact models, SAM's image encoder under ``torch.autocast``
``"autocast-fp16"``       the same in float16
========================  =====================================================================

The fast paths give results close to, not equal to, the exact ones (benchmarks/README.md).
The old keywords (``fast``, ``fast_decoder``, ``dtype``, ``decoder_dtype``, ``fast_dtype``)
still work with a ``DeprecationWarning``; :func:`from_legacy` maps them here. SAM 2.1
(``Sam2Segmenter``) takes the same settings: ``fast*`` is its fast decoder and its Hiera
encoder in that dtype, ``autocast-*`` its exact decoder with the encoder under autocast.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

DTYPES = ("fp32", "bf16", "fp16")
PRECISIONS = (
    "exact",
    "fast",
    "fast-fp32",
    "fast-bf16",
    "fast-fp16",
    "autocast-bf16",
    "autocast-fp16",
)


@dataclass(frozen=True)
class Precision:
    """How a model computes. Build it with :func:`parse_precision`.

    Attributes:
        fast: the optimised paths (SAM's encoder and decoder, Grounding DINO).
        dtype: ``"fp32"``, ``"bf16"``, ``"fp16"``, or None: float32 on the exact path, the
            hardware's fastest on the fast one.
        fast_decoder: SAM's fast mask decoder; None: with ``fast`` on a CPU (it is slower on
            GPUs). Set only by the deprecated ``fast_decoder`` keyword.
        decoder_dtype: the fast decoder's dtype; None follows ``dtype``. Set only by the
            deprecated ``decoder_dtype`` keyword.
    """

    fast: bool = False
    dtype: str | None = None
    fast_decoder: bool | None = None
    decoder_dtype: str | None = None

    @property
    def name(self) -> str:
        """The setting's name (``"fast-bf16"``); a legacy-only combination is spelled out."""
        base = ("fast" if self.fast else "autocast" if self.dtype else "exact") + (
            f"-{self.dtype}" if self.dtype else ""
        )
        extra = []
        if self.fast_decoder is not None:
            extra.append(f"fast_decoder={self.fast_decoder}")
        if self.decoder_dtype is not None:
            extra.append(f"decoder_dtype={self.decoder_dtype}")
        return base + (f" ({', '.join(extra)})" if extra else "")

    def __str__(self) -> str:
        return self.name


def parse_precision(value: str | Precision | None) -> Precision:
    """``"exact"``, ``"fast"``, ``"fast-bf16"`` … (see the module's table) as a :class:`Precision`.

    None is ``"exact"``; a :class:`Precision` is returned as is.

    Raises:
        ValueError: an unknown name; the message lists the known ones.
    """
    if value is None:
        return Precision()
    if isinstance(value, Precision):
        return value
    key = str(value).strip().lower().replace("_", "-")
    if key not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}, got {value!r} "
            "(see grounded_sam.precision for what each runs)"
        )
    mode, _, dtype = key.partition("-")
    return Precision(fast=mode == "fast", dtype=dtype or None)


def dtype_name(dtype: Any) -> str | None:
    """``torch.bfloat16`` / ``"bfloat16"`` / ``"bf16"`` -> ``"bf16"``; None / ``"auto"`` -> None."""
    from grounded_sam.runtime import parse_dtype

    try:
        parsed = parse_dtype(dtype)
    except ValueError:
        raise ValueError(
            f"unknown dtype {dtype!r}; use 'fp32', 'bf16' or 'fp16' (or the torch dtype), or "
            "better precision='fast-bf16' … (grounded_sam.precision)"
        ) from None
    return (
        None
        if parsed is None
        else DTYPES[("float32", "bfloat16", "float16").index(str(parsed).removeprefix("torch."))]
    )


_UNSET: Any = object()  # "not given", distinct from an explicit None


def from_legacy(
    precision: str | Precision | None,
    *,
    owner: str,
    fast: Any = _UNSET,
    dtype: Any = _UNSET,
    fast_decoder: Any = _UNSET,
    decoder_dtype: Any = _UNSET,
) -> Precision:
    """``precision``, or the :class:`Precision` the old keywords meant (with a warning).

    Args:
        precision: the new setting (None: ``"exact"``).
        owner: who was called (``"SamSegmenter"``), for the warning's text.
        fast / dtype / fast_decoder / decoder_dtype: the deprecated keywords, :data:`UNSET`
            when not given (``fast_dtype`` of Grounding DINO arrives as ``dtype``).

    Raises:
        ValueError: both ``precision`` and an old keyword, or a bad dtype spelling.
    """
    given = {
        k: v
        for k, v in (
            ("fast", fast),
            ("dtype", dtype),
            ("fast_decoder", fast_decoder),
            ("decoder_dtype", decoder_dtype),
        )
        if v is not _UNSET
    }
    if not given:
        return parse_precision(precision)
    if precision is not None:
        raise ValueError(f"{owner}: give precision= alone, not with the deprecated {sorted(given)}")
    result = Precision(
        fast=bool(given.get("fast", False)),
        dtype=dtype_name(given.get("dtype")),
        fast_decoder=None if given.get("fast_decoder") is None else bool(given["fast_decoder"]),
        decoder_dtype=dtype_name(given.get("decoder_dtype")),
    )
    base = result.name.split(" ")[0]
    advice = f"use precision={base!r}"
    if base != result.name:
        advice += " (the decoder's own settings have no precision name; they still work)"
    warnings.warn(
        f"{owner}({', '.join(f'{k}=' for k in given)}...) is deprecated; {advice} "
        "(see grounded_sam.precision)",
        DeprecationWarning,
        stacklevel=3,
    )
    return result


UNSET = _UNSET


def fast_compute_dtype(*components: Any) -> dict[str, str]:
    """``{"fast_compute_dtype": "torch.bfloat16"}`` (what a fast path's "auto" dtype resolves
    to on this machine: CPU features, ``GROUNDED_SAM_FORCE_FP32``) when one of
    ``components`` runs fast, else ``{}``; the device is the first component's."""
    if not any(getattr(c, "fast", False) for c in components):
        return {}
    from grounded_sam.runtime import resolve_compute_dtype

    device = getattr(components[0], "device", None) or "cpu"
    return {"fast_compute_dtype": str(resolve_compute_dtype(None, device))}
