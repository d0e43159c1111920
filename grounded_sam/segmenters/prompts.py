"""SAM prompts: validation and the move from original-image pixels to SAM's 1024 frame.

This is the one place where coordinates cross SAM's boundary. ``SamSegmenter`` takes every
point and box in pixels of the ORIGINAL image; here they are scaled like
``ResizeLongestSide.apply_coords`` does. The scaling keeps the input's float precision:
float64 (numpy's default) stays float64 all the way into the prompt encoder, as in
``SamAutomaticMaskGenerator``; anything else becomes float32, as in ``SamPredictor.predict_torch``
fed by ``ResizeLongestSide.apply_*_torch``. Both give bit-identical results to those paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from grounded_sam.validation import check_finite

if TYPE_CHECKING:  # pragma: no cover
    import torch


@dataclass(frozen=True)
class PromptBatch:
    """B prompts in SAM's input frame, on one device (any field may be None).

    Attributes:
        coords: float (B, K, 2) (x, y) in the resized-image frame; ``labels`` int32 (B, K).
        boxes: float (B, 4) xyxy in the resized-image frame.
        masks: float32 (B, 1, 256, 256) low-res logits.
        size: B.
    """

    coords: torch.Tensor | None
    labels: torch.Tensor | None
    boxes: torch.Tensor | None
    masks: torch.Tensor | None
    size: int

    def chunk(self, start: int, stop: int) -> PromptBatch:
        """Prompts ``start:stop``."""

        def part(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[start:stop]

        return PromptBatch(
            part(self.coords),
            part(self.labels),
            part(self.boxes),
            part(self.masks),
            len(range(start, min(stop, self.size))),
        )


def prompt_boxes(xyxy: Any, image_size: tuple[int, int]) -> np.ndarray:
    """Boxes ready for SAM: float32 (N, 4) xyxy clipped to an (H, W) image, each side >= 1 px.

    A side shorter than 1 px after clipping (an empty box, or one entirely outside the image)
    is widened to 1 px around its centre and shifted to stay inside the image. Boxes inside
    the image with both sides >= 1 px come back unchanged, bit for bit.
    """
    h, w = image_size
    b = np.array(xyxy, dtype=np.float32).reshape(-1, 4)
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    for lo, hi, size in ((0, 2, w), (1, 3, h)):
        thin = (b[:, hi] - b[:, lo]) < 1
        if thin.any():
            start = np.clip((b[thin, lo] + b[thin, hi]) / 2 - 0.5, 0, max(size - 1, 0))
            b[thin, lo] = start
            b[thin, hi] = np.minimum(start + 1, size)
    return b


def click_prompts(
    points_xy: Any,
    labels: Any,
    box: Any,
    mask_input: Any,
    *,
    image_size: tuple[int, int],
    mask_input_size: tuple[int, int],
) -> tuple[dict[str, Any], bool]:
    """One interactive prompt (K clicks, optional box and low-res logits) as a batch of B = 1.

    ``points_xy`` and ``labels`` may be None (or empty) when a box or ``mask_input`` is given.
    Every value must be finite; the box must have x1 <= x2 and y1 <= y2, as
    ``Detections.xyxy`` must (the same rule as ``SamSegmenter.segment``).

    Returns the keyword arguments of ``SamSegmenter.decode`` and whether to ask for three
    masks: only a single click alone is ambiguous enough for that (SAM's demo does the same).
    """
    import torch

    if points_xy is None:
        points_xy = np.zeros((0, 2))
    if labels is None:
        labels = np.zeros(0, np.int64)
    check_finite("points_xy", points_xy)
    check_finite("labels", labels)
    pts = points_xy if isinstance(points_xy, torch.Tensor) else np.asarray(points_xy)
    lab = np.asarray(labels).reshape(-1)
    if pts.size == 0:
        pts = None
    elif pts.ndim != 2 or pts.shape[1] != 2 or len(pts) != len(lab):
        raise ValueError(
            f"points_xy must be (K, 2) (x, y) and labels (K,), got {tuple(pts.shape)} and "
            f"{lab.shape}"
        )
    if lab.size and not np.isin(lab, (0, 1)).all():
        raise ValueError(f"labels must be 1 (foreground) or 0 (background), got {lab.tolist()}")
    if pts is None and box is None and mask_input is None:
        raise ValueError("segment_points needs at least one point, a box or a mask_input")
    if box is not None:
        check_finite("box", box)
        box = np.asarray(box, dtype=np.float32)
        if box.size != 4:
            raise ValueError(f"box must be (4,) x1, y1, x2, y2 pixels, got shape {box.shape}")
        box = box.reshape(1, 4)
        if box[0, 2] < box[0, 0] or box[0, 3] < box[0, 1]:
            raise ValueError(
                f"box must be (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2, got "
                f"{box[0].tolist()} (is it xywh? convert with grounded_sam.geometry first)"
            )
        box = prompt_boxes(box, image_size)
    if mask_input is not None:
        check_finite("mask_input", mask_input)
        mask_input = np.asarray(mask_input, dtype=np.float32)
        if mask_input.size != int(np.prod(mask_input_size)):
            raise ValueError(
                f"mask_input must be low-res logits of {mask_input_size} (as returned by "
                f"segment_points), got shape {mask_input.shape}"
            )
        mask_input = mask_input.reshape(1, 1, *mask_input_size)
    multimask = pts is not None and len(pts) == 1 and box is None and mask_input is None
    kwargs = {
        "points": None if pts is None else pts[None],
        "point_labels": None if pts is None else lab[None],
        "boxes": box,
        "mask_input": mask_input,
    }
    return kwargs, multimask


def to_model_frame(
    coords: torch.Tensor, original_size: tuple[int, int], input_size: tuple[int, int]
) -> torch.Tensor:
    """(..., 2) (x, y) pixels of an (H, W) image -> the resized (h, w) frame, same dtype."""
    (old_h, old_w), (new_h, new_w) = original_size, input_size
    coords = coords.clone()
    coords[..., 0] = coords[..., 0] * (new_w / old_w)
    coords[..., 1] = coords[..., 1] * (new_h / old_h)
    return coords


def prepare_prompts(
    *,
    points: Any,
    point_labels: Any,
    boxes: Any,
    mask_input: Any,
    original_size: tuple[int, int],
    input_size: tuple[int, int],
    mask_input_size: tuple[int, int],
    device: torch.device,
) -> PromptBatch:
    """Check shapes, agree on B, move coordinates to SAM's frame; see :class:`PromptBatch`.

    Raises ValueError naming the prompt and the expected shape when something does not fit.
    """
    import torch

    sizes: dict[str, int] = {}
    coords = labels = box_t = masks_t = None
    if (points is None) != (point_labels is None):
        raise ValueError("pass points and point_labels together (or neither)")
    for name, value in (("points", points), ("boxes", boxes), ("mask_input", mask_input)):
        if value is not None:
            check_finite(name, value)
    if points is not None:
        coords = _as_float(points, device)
        if coords.ndim != 3 or coords.shape[-1] != 2:
            raise ValueError(f"points must be (B, K, 2) (x, y), got {tuple(coords.shape)}")
        coords = to_model_frame(coords, original_size, input_size)
        labels = torch.as_tensor(_numpy_or_tensor(point_labels), device=device).to(torch.int)
        if tuple(labels.shape) != tuple(coords.shape[:2]):
            raise ValueError(
                f"point_labels must be (B, K) = {tuple(coords.shape[:2])}, "
                f"got {tuple(labels.shape)}"
            )
        sizes["points"] = coords.shape[0]
    if boxes is not None:
        box_t = _as_float(boxes, device)
        if box_t.ndim != 2 or box_t.shape[-1] != 4:
            raise ValueError(f"boxes must be (B, 4) xyxy, got {tuple(box_t.shape)}")
        box_t = to_model_frame(box_t.reshape(-1, 2, 2), original_size, input_size).reshape(-1, 4)
        sizes["boxes"] = box_t.shape[0]
    if mask_input is not None:
        masks_t = torch.as_tensor(_numpy_or_tensor(mask_input), device=device).float()
        want = (1, *mask_input_size)
        if masks_t.ndim != 4 or tuple(masks_t.shape[1:]) != want:
            raise ValueError(
                f"mask_input must be (B, {', '.join(map(str, want))}) low-res logits, "
                f"got {tuple(masks_t.shape)}"
            )
        sizes["mask_input"] = masks_t.shape[0]
    if not sizes:
        raise ValueError("a prompt is needed: points (with point_labels), boxes or mask_input")
    if len(set(sizes.values())) > 1:
        raise ValueError(f"prompts disagree on the batch size B: {sizes}")
    return PromptBatch(coords, labels, box_t, masks_t, next(iter(sizes.values())))


def _numpy_or_tensor(x: Any) -> Any:
    import torch

    return x if isinstance(x, torch.Tensor) else np.asarray(x)


def _as_float(x: Any, device: torch.device) -> torch.Tensor:
    """A float tensor on ``device``: float64 stays float64, everything else becomes float32."""
    import torch

    t = torch.as_tensor(_numpy_or_tensor(x))
    dtype = torch.float64 if t.dtype == torch.float64 else torch.float32
    return t.to(device=device, dtype=dtype)
