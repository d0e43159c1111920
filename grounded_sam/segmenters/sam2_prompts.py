"""SAM 2 prompts: validation and the move from original-image pixels to SAM 2's input frame.

SAM 2 resizes every image to a 1024 x 1024 square (no aspect-preserving padding as in SAM),
so a point (x, y) of an (H, W) image becomes (x / W * 1024, y / H * 1024), computed in
float32 as ``SAM2Transforms.transform_coords`` does (here with that very function). Boxes
become two points labelled 2 and 3 placed before the clicks, as ``SAM2ImagePredictor._predict``
does; the prompt encoder then sees one ``(coords, labels)`` pair.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


def _tensor(x: Any, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    import torch

    return torch.as_tensor(x if isinstance(x, torch.Tensor) else np.asarray(x)).to(
        device=device, dtype=dtype
    )


def sam2_point_prompts(
    *,
    points: Any,
    point_labels: Any,
    boxes: Any,
    mask_input: Any,
    transforms: Any,
    original_size: tuple[int, int],
    mask_input_size: tuple[int, int],
    device: torch.device,
) -> tuple[tuple[torch.Tensor, torch.Tensor] | None, torch.Tensor | None, int]:
    """B prompts in SAM 2's frame: ``(coords, labels)`` or None, ``mask_input`` or None, B.

    Args:
        points: (B, K, 2) (x, y) pixels of the original image, with ``point_labels`` (B, K)
            (1 foreground, 0 background).
        boxes: (B, 4) xyxy pixels of the original image.
        mask_input: (B, 1, 256, 256) low-res logits.
        transforms: the segmenter's ``SAM2Transforms``.
        original_size: (H, W).

    Returns coords float32 (B, 2 + K or K or 2, 2) in the 1024 frame with int32 labels
    (2 and 3 for a box's corners), the mask input float32, and B. Raises ValueError naming
    the prompt and the expected shape when something does not fit.
    """
    import torch

    sizes: dict[str, int] = {}
    concat = masks = None
    if (points is None) != (point_labels is None):
        raise ValueError("pass points and point_labels together (or neither)")
    if points is not None:
        coords = _tensor(points, torch.float, device)
        if coords.ndim != 3 or coords.shape[-1] != 2:
            raise ValueError(f"points must be (B, K, 2) (x, y), got {tuple(coords.shape)}")
        labels = _tensor(point_labels, torch.int, device)
        if tuple(labels.shape) != tuple(coords.shape[:2]):
            raise ValueError(
                f"point_labels must be (B, K) = {tuple(coords.shape[:2])}, "
                f"got {tuple(labels.shape)}"
            )
        coords = transforms.transform_coords(coords, normalize=True, orig_hw=original_size)
        concat = (coords, labels)
        sizes["points"] = coords.shape[0]
    if boxes is not None:
        box = _tensor(boxes, torch.float, device)
        if box.ndim != 2 or box.shape[-1] != 4:
            raise ValueError(f"boxes must be (B, 4) xyxy, got {tuple(box.shape)}")
        corners = transforms.transform_boxes(box, normalize=True, orig_hw=original_size)
        corner_labels = torch.tensor([[2, 3]], dtype=torch.int, device=device).repeat(
            box.shape[0], 1
        )
        sizes["boxes"] = box.shape[0]
        if concat is not None and sizes["points"] == sizes["boxes"]:
            concat = (
                torch.cat([corners, concat[0]], dim=1),
                torch.cat([corner_labels, concat[1]], dim=1),
            )
        elif concat is None:
            concat = (corners, corner_labels)
    if mask_input is not None:
        masks = _tensor(mask_input, torch.float, device)
        want = (1, *mask_input_size)
        if masks.ndim != 4 or tuple(masks.shape[1:]) != want:
            raise ValueError(
                f"mask_input must be (B, {', '.join(map(str, want))}) low-res logits, "
                f"got {tuple(masks.shape)}"
            )
        sizes["mask_input"] = masks.shape[0]
    if not sizes:
        raise ValueError("a prompt is needed: points (with point_labels), boxes or mask_input")
    if len(set(sizes.values())) > 1:
        raise ValueError(f"prompts disagree on the batch size B: {sizes}")
    return concat, masks, next(iter(sizes.values()))
