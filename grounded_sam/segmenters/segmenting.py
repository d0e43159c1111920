"""The public calls shared by ``SamSegmenter`` and ``Sam2Segmenter``, on top of their parts.

Both segmenters provide ``embed(image)``, ``_embed_array(rgb_uint8)`` (cached by content),
``decode(embedding, points=, point_labels=, boxes=, mask_input=, multimask=)`` and
``_binary_masks(low_res (N, 256, 256), embedding)``; this module turns those into
``segment`` (boxes of ``Detections`` to masks, all in one decoder call) and
``segment_points`` (one object from clicks). Coordinates are pixels of the original image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from grounded_sam.segmenters.prompts import click_prompts, prompt_boxes
from grounded_sam.types import Detections


def cached_embedding(
    segmenter: Any, img: np.ndarray, encode: Callable[[np.ndarray, str], Any]
) -> Any:
    """The embedding of ``img`` (RGB uint8 (H, W, 3)) from ``segmenter``'s content cache, or
    ``encode(img, key)`` once, counted in ``segmenter.stats`` and cached.

    Uses the segmenter's ``_cache`` (an ``LRUCache``), ``_lock`` and ``stats``
    (``cache_hits``, ``encoder_calls``).
    """
    from grounded_sam.image import image_content_key

    key = image_content_key(img)
    cached = segmenter._cache.get(key)
    if cached is not None:
        with segmenter._lock:
            segmenter.stats.cache_hits += 1
        return cached
    embedding = encode(img, key)
    with segmenter._lock:
        segmenter.stats.encoder_calls += 1
    segmenter._cache.put(key, embedding)
    return embedding


def segment_detections(
    segmenter: Any, image: Any, detections: Detections, *, multimask: bool
) -> Detections:
    """``detections`` with ``masks`` bool (N, H, W) and ``mask_scores`` float32 (N,) filled.

    Boxes (xyxy pixels) are clipped and widened by
    :func:`grounded_sam.segmenters.prompts.prompt_boxes`; all go through the decoder in one
    call; with ``multimask`` the mask of highest predicted IoU is kept per box (only that
    one is upscaled). Zero detections run no model. Raises ValueError when ``detections``
    were made on an image of another size.
    """
    import torch

    from grounded_sam.image import as_rgb
    from grounded_sam.validation import check_detections

    check_detections("detections", detections)
    img = as_rgb(image)
    h, w = img.shape[:2]
    if detections.image_size not in ((0, 0), (h, w)):
        raise ValueError(
            f"detections are for an image of (H, W) = {detections.image_size} but the image "
            f"is {(h, w)}; pass the image the detections were made on"
        )
    if len(detections) == 0:
        return detections.replace(
            masks=np.zeros((0, h, w), bool),
            mask_scores=np.zeros(0, np.float32),
            image_size=(h, w),
        )
    embedding = segmenter._embed_array(img)
    boxes = prompt_boxes(detections.xyxy, (h, w))
    low, iou = segmenter.decode(embedding, boxes=torch.from_numpy(boxes), multimask=multimask)
    best = iou.argmax(dim=1)
    rows = torch.arange(len(best), device=best.device)
    low, iou = low[rows, best], iou[rows, best]
    return detections.replace(
        masks=segmenter._binary_masks(low, embedding),
        mask_scores=iou.cpu().numpy().astype(np.float32),
        image_size=(h, w),
    )


def segment_clicks(
    segmenter: Any,
    image: Any,
    points_xy: Any,
    labels: Any,
    box: Any,
    mask_input: Any,
    *,
    mask_input_size: tuple[int, int],
    clamp: float | None = None,
) -> tuple[np.ndarray, float, np.ndarray]:
    """One object from K clicks (and optionally a box and earlier low-res logits).

    A single click alone decodes three masks and keeps the best (predicted IoU); anything
    else decodes one. Returns ``mask`` bool (H, W), ``score`` and ``low_res_logits``
    float32 (1, 256, 256) (clipped to [-clamp, clamp] when ``clamp`` is given).
    """
    from grounded_sam.image import as_rgb

    img = as_rgb(image)
    prompts, multimask = click_prompts(  # checked before any model runs
        points_xy,
        labels,
        box,
        mask_input,
        image_size=(int(img.shape[0]), int(img.shape[1])),
        mask_input_size=mask_input_size,
    )
    embedding = segmenter._embed_array(img)
    low, iou = segmenter.decode(embedding, **prompts, multimask=multimask)
    best = int(iou[0].argmax())
    low_best = low[0, best][None]  # (1, 256, 256)
    mask = segmenter._binary_masks(low_best, embedding)[0]
    if clamp is not None:
        low_best = low_best.clamp(-clamp, clamp)
    return mask, float(iou[0, best]), low_best.cpu().numpy().astype(np.float32)
