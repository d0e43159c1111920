"""The one place that turns a registry entry (or "tiny random") into a segmenter.

SAM entries build a :class:`grounded_sam.SamSegmenter`; entries whose builder says
``"family": "sam2"`` (SAM 2.1) build a :class:`grounded_sam.Sam2Segmenter`. The segmenter
part of the model factory: :mod:`grounded_sam.models.build` (what the pipeline, the web
service and the CLI ask) comes here for segmenters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grounded_sam.precision import UNSET, Precision, from_legacy, parse_precision

SAM2_FAMILY = "sam2"


def is_sam2(entry_or_name: Any) -> bool:
    """True for a SAM 2.1 registry entry or name (``"sam2.1_hiera_tiny"`` …)."""
    builder = getattr(entry_or_name, "builder", None)
    if builder is not None:
        return builder.get("family") == SAM2_FAMILY
    return str(entry_or_name).strip().lower().startswith(SAM2_FAMILY)


def build_segmenter(
    entry: Any,
    path: str | Path,
    *,
    device: Any = "cpu",
    precision: str | Precision | None = None,
    **options: Any,
) -> Any:
    """The segmenter of a registry ``entry`` loaded from ``path``.

    ``precision`` (:mod:`grounded_sam.precision`) and ``options`` go to
    ``SamSegmenter.from_checkpoint``. SAM 2.1 has one path, the exact one: a ``"fast*"``
    precision runs it exact, an explicit dtype (``"fast-bf16"``, ``"autocast-*"``) is refused
    (ValueError). The deprecated ``fast`` / ``dtype`` keywords are still read.
    """
    if is_sam2(entry):
        from grounded_sam.segmenters.sam2 import Sam2Segmenter

        resolved = from_legacy(
            precision,
            owner=entry.name,
            fast=options.pop("fast", UNSET),
            dtype=options.pop("dtype", UNSET),
        )
        check_sam2_precision(resolved, entry.name)
        return Sam2Segmenter.from_checkpoint(
            entry.builder["model_type"], path, device=device, name=entry.name, **options
        )
    from grounded_sam.segmenters.sam import SamSegmenter

    return SamSegmenter.from_checkpoint(
        entry.builder["model_type"],
        path,
        device=device,
        name=entry.name,
        precision=precision,
        **options,
    )


def check_sam2_precision(precision: Precision, name: str) -> None:
    """SAM 2.1 runs its exact float32 path (a fast one is being added): an explicit dtype is
    refused rather than silently dropped; ``"fast"`` alone runs exact."""
    if precision.dtype is not None:
        raise ValueError(
            f"{name} runs in float32 only; drop the dtype setting (precision={precision.name!r}"
            ", --dtype) or choose a SAM model (vit_b, vit_l, vit_h)"
        )


def tiny_segmenter(
    family: str = "sam",
    *,
    seed: int = 0,
    device: Any = None,
    precision: str | Precision | None = None,
) -> Any:
    """A segmenter on a tiny seeded random model (``grounded_sam.testing``): ``family``
    ``"sam"`` (SAM without global attention: ~0.1 s an image on a CPU) or ``"sam2"``
    (SAM 2.1, ~1.5 s an image: SAM 2 always works at 1024 x 1024). Outputs are meaningless.
    ``precision`` as in :func:`build_segmenter`."""
    if family == SAM2_FAMILY or is_sam2(family):
        from grounded_sam.segmenters.sam2 import Sam2Segmenter
        from grounded_sam.testing.sam2 import tiny_sam2

        check_sam2_precision(parse_precision(precision), "SAM 2.1")
        return Sam2Segmenter(tiny_sam2(seed=seed), device=device)
    from grounded_sam.segmenters.sam import SamSegmenter
    from grounded_sam.testing.sam import tiny_sam

    sam = tiny_sam(seed=seed, global_attn_indexes=())
    return SamSegmenter(sam, device=device, precision=precision)
