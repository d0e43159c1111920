"""The image Grounding DINO's processor sees: thin strips padded so that no side vanishes.

The processor resizes the short side to ``shortest_edge`` (800) unless the long side would
pass ``longest_edge`` (1333); a 1 x 5000 strip then has a short side of 0.27 px, which
transformers refuses. :func:`pad_for_detector` pads such an image at the bottom or the right,
with the processor's mean colour (0 after normalisation), until the resized short side is at
least :data:`MIN_RESIZED_SIDE` pixels. Boxes come back normalised to the padded image; the
detector converts them with the padded size and clips them to the original image, so the
result is in pixels of the original image as always. Images that need no padding are passed
through unchanged (same object).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

MIN_RESIZED_SIDE = 2
"""Smallest side, in pixels after the processor's resize, that an image is padded to."""

_IMAGENET_MEAN = (0.485, 0.456, 0.406)


def detector_frame(image_size: tuple[int, int], image_processor: Any) -> tuple[int, int]:
    """(H', W') >= (H, W): the size of the frame :func:`pad_for_detector` puts an image in."""
    h, w = image_size
    longest = _longest_edge(image_processor)
    if longest is None:
        return h, w
    need = math.ceil(MIN_RESIZED_SIDE * max(h, w) / longest)
    return max(h, need), max(w, need)


def pad_for_detector(rgb: np.ndarray, image_processor: Any) -> np.ndarray:
    """``rgb`` (uint8 (H, W, 3)) padded at the bottom/right so the processor can resize it.

    Returns ``rgb`` itself when no padding is needed, else a new uint8 (H', W', 3) array
    (the size :func:`detector_frame` gives) with ``rgb`` in its top-left corner.
    """
    h, w = rgb.shape[:2]
    new_h, new_w = detector_frame((h, w), image_processor)
    if (new_h, new_w) == (h, w):
        return rgb
    mean = getattr(image_processor, "image_mean", None) or _IMAGENET_MEAN
    fill = np.rint(np.asarray(mean, dtype=np.float64)[:3] * 255).clip(0, 255).astype(np.uint8)
    out = np.empty((new_h, new_w, 3), np.uint8)
    out[...] = fill
    out[:h, :w] = rgb
    return out


def _longest_edge(image_processor: Any) -> int | None:
    size = getattr(image_processor, "size", None)
    longest = getattr(size, "longest_edge", None)
    if longest is None and isinstance(size, dict):
        longest = size.get("longest_edge")
    return int(longest) if longest else None
