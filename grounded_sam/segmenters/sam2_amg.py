"""Automatic masks with SAM 2.1: ``SAM2AutomaticMaskGenerator``'s options on ``Sam2Segmenter``.

The algorithm is the one of :func:`grounded_sam.segmenters.amg.generate_masks` (SAM's, which
``SAM2AutomaticMaskGenerator`` adapts): a grid of single foreground points, three masks per
point, predicted-IoU and stability filters, box NMS within and across crops. SAM 2's
generator differs from SAM's only in its defaults (``pred_iou_thresh`` 0.8), in how points
reach the model (float32, normalised by the crop's size: :mod:`sam2_prompts`) and in the
one-step upscaling of the logits (:meth:`Sam2Segmenter.upscale_masks`), which the segmenter
supplies, so with the same options the same set of masks comes out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grounded_sam.types import Detections

if TYPE_CHECKING:  # pragma: no cover
    from grounded_sam.segmenters.sam2 import Sam2Segmenter


def generate_sam2_masks(
    segmenter: Sam2Segmenter,
    image: Any,
    *,
    pred_iou_thresh: float = 0.8,
    mask_threshold: float | None = None,
    use_m2m: bool = False,
    multimask_output: bool = True,
    **options: Any,
) -> Detections:
    """Masks of everything in ``image``, as ``SAM2AutomaticMaskGenerator.generate`` finds them.

    ``options`` are those of :func:`grounded_sam.segmenters.amg.generate_masks` (the names
    and defaults of ``SAM2AutomaticMaskGenerator``: ``points_per_side=32``,
    ``points_per_batch=64``, ``stability_score_thresh=0.95``, ``box_nms_thresh=0.7``,
    ``crop_n_layers=0`` …); ``pred_iou_thresh`` defaults to SAM 2's 0.8. The result is the
    same :class:`Detections` (``xyxy`` pixel edges of the masks, ``masks`` bool (N, H, W),
    predicted IoU as ``scores``/``mask_scores``, ``data`` with ``stability_score``,
    ``point_coords``, ``crop_box``). Differences, each refused or stated:

    - ``mask_threshold``: must equal the segmenter's (None does); build
      ``Sam2Segmenter(model, mask_threshold=...)`` for another one.
    - ``use_m2m=True`` and ``multimask_output=False`` are not supported (ValueError); use
      ``sam2.automatic_mask_generator.SAM2AutomaticMaskGenerator`` for them.
    - ``min_mask_region_area > 0`` removes small islands and holes from the full-size masks
      as SAM's generator does (OpenCV). SAM 2's generator instead fills them on the
      low-res logits with its CUDA extension and, without one, skips the step with a
      warning; the masks then differ from the reference's.
    """
    from grounded_sam.segmenters.amg import generate_masks

    if mask_threshold is not None and float(mask_threshold) != segmenter.mask_threshold:
        raise ValueError(
            f"mask_threshold={mask_threshold} differs from the segmenter's "
            f"({segmenter.mask_threshold}); build Sam2Segmenter(model, mask_threshold="
            f"{mask_threshold}) instead"
        )
    if use_m2m or not multimask_output:
        raise ValueError(
            "use_m2m=True and multimask_output=False are not supported by Sam2Segmenter."
            "generate; use sam2's SAM2AutomaticMaskGenerator for them"
        )
    return generate_masks(
        segmenter,  # type: ignore[arg-type]
        image,
        pred_iou_thresh=pred_iou_thresh,
        **options,
    )
