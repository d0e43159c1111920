"""The one place that turns a registry entry (or "tiny random") into a segmenter.

SAM entries build a :class:`grounded_sam.SamSegmenter`; entries whose builder says
``"family": "sam2"`` (SAM 2.1) build a :class:`grounded_sam.Sam2Segmenter`. The segmenter
part of the model factory: :mod:`grounded_sam.models.build` (what the pipeline, the web
service and the CLI ask) comes here for segmenters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grounded_sam.precision import Precision

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
    ``SamSegmenter.from_checkpoint`` or ``Sam2Segmenter.from_checkpoint``; both take every
    precision setting. The deprecated ``fast`` / ``dtype`` keywords are still read.
    """
    if is_sam2(entry):
        from grounded_sam.segmenters.sam2 import Sam2Segmenter

        cls = Sam2Segmenter
    else:
        from grounded_sam.segmenters.sam import SamSegmenter

        cls = SamSegmenter
    return cls.from_checkpoint(
        entry.builder["model_type"],
        path,
        device=device,
        name=entry.name,
        precision=precision,
        **options,
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

        return Sam2Segmenter(tiny_sam2(seed=seed), device=device, precision=precision)
    from grounded_sam.segmenters.sam import SamSegmenter
    from grounded_sam.testing.sam import tiny_sam

    sam = tiny_sam(seed=seed, global_attn_indexes=())
    return SamSegmenter(sam, device=device, precision=precision)
