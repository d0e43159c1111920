"""Box formats, named by format. Conversions happen only at model and exporter boundaries.

Formats used in this package:

- ``xyxy``: (N, 4) float, pixels, (x1, y1, x2, y2); x1 <= x2, y1 <= y2. Pixel edges: a box
  that covers exactly pixel column 3 has x1 = 3, x2 = 4.
- ``xywh``: (N, 4) float, pixels, (x, y, width, height) with (x, y) the top-left corner
  (COCO's ``bbox`` format).
- ``cxcywh_norm``: (N, 4) float in [0, 1], (centre x, centre y, width, height) relative to the
  image size (Grounding DINO's output format).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_boxes(boxes: np.ndarray | Sequence, name: str = "boxes") -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {arr.shape}")
    return arr


def cxcywh_norm_to_xyxy(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Normalised (cx, cy, w, h) in [0, 1] -> pixel xyxy of an image of ``(H, W)``. float32 (N, 4)."""
    b = _as_boxes(boxes)
    h, w = image_size
    cx, cy, bw, bh = b.T
    out = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
    out *= np.array([w, h, w, h], dtype=np.float64)
    return out.astype(np.float32)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """Pixel (x1, y1, x2, y2) -> pixel (x, y, w, h), COCO's bbox. float32 (N, 4)."""
    b = _as_boxes(boxes)
    out = b.copy()
    out[:, 2:] = b[:, 2:] - b[:, :2]
    return out.astype(np.float32)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Pixel (x, y, w, h) -> pixel (x1, y1, x2, y2). float32 (N, 4)."""
    b = _as_boxes(boxes)
    out = b.copy()
    out[:, 2:] = b[:, :2] + b[:, 2:]
    return out.astype(np.float32)


def clip_xyxy(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Clip pixel xyxy boxes to an image of ``(H, W)``: 0 <= x <= W, 0 <= y <= H. float32 (N, 4)."""
    b = _as_boxes(boxes)
    h, w = image_size
    out = b.copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out.astype(np.float32)


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Area of xyxy boxes, (N,) float32; inverted boxes have area 0."""
    b = _as_boxes(boxes)
    return ((b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)).astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: (N, 4) x (M, 4) -> (N, M) float32; 0 where both are empty."""
    a = _as_boxes(a, "a")
    b = _as_boxes(b, "b")
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clip(0).prod(axis=2)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return iou.astype(np.float32)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Non-maximum suppression on xyxy boxes; returns kept indices (int64), best score first.

    With ``groups`` (an (N,) int array, e.g. class ids) boxes only suppress boxes of their own
    group (per-class NMS). Uses torchvision's kernel, so ties break exactly as in SAM.
    """
    import torch
    from torchvision.ops import batched_nms

    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    b = _as_boxes(boxes)
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    if s.shape != (len(b),):
        raise ValueError(f"scores must have shape ({len(b)},) to match boxes, got {s.shape}")
    g = np.zeros(len(b), dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    if g.shape != (len(b),):
        raise ValueError(f"groups must have shape ({len(b)},) to match boxes, got {g.shape}")
    if len(b) == 0:
        return np.zeros(0, dtype=np.int64)
    keep = batched_nms(
        torch.from_numpy(b).float(),
        torch.from_numpy(s),
        torch.from_numpy(g),
        float(iou_threshold),
    )
    return keep.numpy().astype(np.int64)
