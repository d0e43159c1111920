"""The one place that turns a registry entry (or "tiny random") into a segmenter.

SAM entries build a :class:`grounded_sam.SamSegmenter`; entries whose builder says
``"family": "sam2"`` (SAM 2.1) build a :class:`grounded_sam.Sam2Segmenter`. The pipeline,
the web service and the CLI ask here instead of choosing a class themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SAM2_FAMILY = "sam2"


def is_sam2(entry_or_name: Any) -> bool:
    """True for a SAM 2.1 registry entry or name (``"sam2.1_hiera_tiny"`` …)."""
    builder = getattr(entry_or_name, "builder", None)
    if builder is not None:
        return builder.get("family") == SAM2_FAMILY
    return str(entry_or_name).strip().lower().startswith(SAM2_FAMILY)


def build_segmenter(
    entry: Any, path: str | Path, *, device: Any = "cpu", fast: bool = False, **options: Any
) -> Any:
    """The segmenter of a registry ``entry`` loaded from ``path``.

    ``fast`` and ``options`` go to ``SamSegmenter.from_checkpoint``. SAM 2.1 has one path,
    the exact one: ``fast`` is ignored there, and ``dtype`` is refused (ValueError).
    """
    if is_sam2(entry):
        from grounded_sam.segmenters.sam2 import Sam2Segmenter

        options.pop("fast", None)
        if options.get("dtype") is not None:
            raise ValueError(
                f"{entry.name} runs in float32 only; drop the dtype setting (--dtype) or choose "
                "a SAM model (vit_b, vit_l, vit_h)"
            )
        options.pop("dtype", None)
        return Sam2Segmenter.from_checkpoint(
            entry.builder["model_type"], path, device=device, name=entry.name, **options
        )
    from grounded_sam.segmenters.sam import SamSegmenter

    return SamSegmenter.from_checkpoint(
        entry.builder["model_type"],
        path,
        device=device,
        name=entry.name,
        **{"fast": bool(fast), **options},
    )


def tiny_segmenter(
    family: str = "sam", *, seed: int = 0, device: Any = None, fast: bool = False
) -> Any:
    """A segmenter on a tiny seeded random model (``grounded_sam.testing``): ``family``
    ``"sam"`` (SAM without global attention: ~0.1 s an image on a CPU) or ``"sam2"``
    (SAM 2.1, ~1.5 s an image: SAM 2 always works at 1024 x 1024). Outputs are meaningless."""
    if family == SAM2_FAMILY or is_sam2(family):
        from grounded_sam.segmenters.sam2 import Sam2Segmenter
        from grounded_sam.testing.sam2 import tiny_sam2

        return Sam2Segmenter(tiny_sam2(seed=seed), device=device)
    from grounded_sam.segmenters.sam import SamSegmenter
    from grounded_sam.testing.sam import tiny_sam

    return SamSegmenter(tiny_sam(seed=seed, global_attn_indexes=()), device=device, fast=fast)
