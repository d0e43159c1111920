"""Automatic mask generation: SAM's fully automatic stage on top of :class:`SamSegmenter`.

The algorithm is the one of the SAM paper (and of ``segment_anything``'s
``SamAutomaticMaskGenerator``, whose settings and defaults it keeps): prompt the decoder with
a regular grid of single foreground points, keep all three masks of each point, drop masks
whose predicted IoU or stability score is low, remove duplicates with box NMS, optionally
repeat on overlapping crops of the image and merge the crops, optionally remove small islands
and holes. For the same weights and settings it returns the same set of masks.

What differs is how the work is done:

- the image embedding comes from ``segmenter.embed``, so an image that was already embedded
  (for example by ``segment``) is not encoded again, and the generator keeps no image state;
- the predicted-IoU filter runs on the decoder's output, before the masks are upscaled to
  full resolution (it does not depend on them), so rejected masks are never upscaled;
- masks stay as bit-packed tensors between the stages (in segment_anything's ``MaskData``)
  instead of run-length encodings built in Python loops, and everything is computed in
  batches with torch;
- boxes come out as ``xyxy`` pixel edges (``grounded_sam.masks.masks_to_xyxy``), not SAM's
  XYWH. Internally the NMS uses SAM's inclusive boxes so the de-duplication is identical.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from grounded_sam.masks import masks_to_xyxy
from grounded_sam.types import Detections

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from segment_anything.utils.amg import MaskData

    from grounded_sam.segmenters.sam import SamSegmenter


_BIT_WEIGHTS = (128, 64, 32, 16, 8, 4, 2, 1)


def _pack(masks: torch.Tensor) -> torch.Tensor:
    """bool (K, h, w) -> uint8 (K, ceil(h*w/8)), 8 pixels per byte (row-major)."""
    import torch

    k, h, w = masks.shape
    flat = masks.reshape(k, h * w)
    pad = (-flat.shape[1]) % 8
    if pad:
        flat = torch.nn.functional.pad(flat, (0, pad))
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=masks.device)
    return (flat.view(k, flat.shape[1] // 8, 8).to(torch.uint8) * weights).sum(
        -1, dtype=torch.uint8
    )


def _unpack(packed: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_pack`: uint8 (K, ceil(h*w/8)) -> bool (K, h, w)."""
    import torch

    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=packed.device)
    bits = (packed[..., None] & weights) != 0
    k = packed.shape[0]
    return bits.reshape(k, packed.shape[1] * 8)[:, : h * w].reshape(k, h, w)


def _cat(batches: list[MaskData]) -> MaskData | None:
    """One :class:`MaskData` of the batches' tensors, concatenated once (``MaskData.cat``
    copies what it holds at every call: quadratic in the number of batches)."""
    import torch
    from segment_anything.utils.amg import MaskData

    if not batches:
        return None
    return MaskData(**{key: torch.cat([b[key] for b in batches]) for key, _ in batches[0].items()})


# Float logits upscaled at once (SAM's 1024 x 1024 step plus the crop size, 4 bytes a pixel):
# bounds memory on large images without changing any value (upscaling is per mask).
_UPSCALE_BUDGET = 256 * 2**20


def _process_crop(
    segmenter: SamSegmenter,
    image: np.ndarray,
    crop_box: list[int],
    grid: np.ndarray,
    *,
    points_per_batch: int,
    pred_iou_thresh: float,
    stability_score_thresh: float,
    stability_score_offset: float,
    box_nms_thresh: float,
) -> MaskData | None:
    """Masks of one crop after the quality filters and NMS, in the original image's frame.

    Returns segment_anything's ``MaskData`` of ``packed`` (masks at crop size, see
    :func:`_pack`), ``iou``, ``stability``, ``points`` (float64 (K, 2) xy pixels), ``boxes``
    (SAM's inclusive xyxy, original frame), or None when nothing survives.
    """
    import torch
    from torchvision.ops import batched_nms

    x0, y0, x1, y1 = crop_box
    orig_h, orig_w = image.shape[:2]
    whole = (x0, y0, x1, y1) == (0, 0, orig_w, orig_h)
    # The whole image goes in unchanged so that an embedding cached for it is reused.
    crop = image if whole else np.ascontiguousarray(image[y0:y1, x0:x1])
    embedding = segmenter.embed(crop)
    crop_h, crop_w = crop.shape[:2]
    step = max(1, _UPSCALE_BUDGET // (4 * (1024 * 1024 + crop_h * crop_w)))

    points_all = grid * np.array([[crop_w, crop_h]], dtype=np.float64)  # (P, 2) xy, crop frame
    found: list[MaskData] = []  # the masks of each batch that passed the filters
    for start in range(0, len(points_all), points_per_batch):
        points = points_all[start : start + points_per_batch]
        b = len(points)
        low_res, iou = segmenter.decode(
            embedding,
            points=points[:, None, :],
            point_labels=np.ones((b, 1), dtype=np.int64),
            multimask=True,
        )
        m = low_res.shape[1]
        low_res = low_res.flatten(0, 1)  # (b*m, 256, 256)
        iou = iou.flatten(0, 1)
        point_xy = torch.from_numpy(np.repeat(points, m, axis=0))  # float64, stays on the CPU

        # Predicted IoU does not depend on the full-size mask: filter before upscaling.
        if pred_iou_thresh > 0.0:
            keep = iou > pred_iou_thresh
            low_res, iou, point_xy = low_res[keep], iou[keep], point_xy[keep.cpu()]
        for i in range(0, len(iou), step):
            chunk = slice(i, i + step)
            passed = _full_size_filters(
                segmenter,
                embedding,
                low_res[chunk],
                iou[chunk],
                point_xy[chunk],
                crop_box,
                (orig_h, orig_w),
                stability_score_thresh,
                stability_score_offset,
            )
            if passed is not None:
                found.append(passed)

    data = _cat(found)
    if data is None:
        return None
    keep = batched_nms(
        data["boxes"].float(),
        data["iou"],
        torch.zeros(len(data["boxes"]), device=data["boxes"].device),
        iou_threshold=box_nms_thresh,
    )
    data.filter(keep)
    offset = torch.tensor([x0, y0, x0, y0], device=data["boxes"].device)
    data["boxes"] = data["boxes"] + offset
    data["points"] = data["points"] + torch.tensor([x0, y0], device=data["points"].device)
    return data


def _full_size_filters(
    segmenter: SamSegmenter,
    embedding: Any,
    low_res: torch.Tensor,
    iou: torch.Tensor,
    point_xy: torch.Tensor,
    crop_box: list[int],
    orig_size: tuple[int, int],
    stability_score_thresh: float,
    stability_score_offset: float,
) -> MaskData | None:
    """Upscale K low-res logits (K, 256, 256) to the crop, apply the filters that need the
    full-size mask (stability score, crop edge); returns the survivors (``packed``, ``iou``,
    ``stability``, ``points``, ``boxes``), None when none survive."""
    from segment_anything.utils.amg import (
        MaskData,
        batched_mask_to_box,
        calculate_stability_score,
        is_box_near_crop_edge,
    )

    if len(iou) == 0:
        return None
    threshold = float(segmenter.mask_threshold)
    logits = segmenter.upscale_masks(low_res[:, None], embedding)[:, 0]  # (K, crop_h, crop_w)
    stability = calculate_stability_score(logits, threshold, stability_score_offset)
    if stability_score_thresh > 0.0:
        keep = stability >= stability_score_thresh
        logits, iou, stability = logits[keep], iou[keep], stability[keep]
        point_xy = point_xy[keep.cpu()]
    masks = logits > threshold
    del logits
    boxes = batched_mask_to_box(masks)  # inclusive xyxy, crop frame
    # Masks cut by the crop's border (but not by the image's) are left to other crops.
    keep = ~is_box_near_crop_edge(boxes, crop_box, [0, 0, orig_size[1], orig_size[0]])
    if not bool(keep.all()):
        masks, iou, stability, boxes = masks[keep], iou[keep], stability[keep], boxes[keep]
        point_xy = point_xy[keep.cpu()]
    if len(iou) == 0:
        return None
    return MaskData(packed=_pack(masks), iou=iou, stability=stability, points=point_xy, boxes=boxes)


def _remove_small_regions(
    masks: np.ndarray, boxes: np.ndarray, min_area: int, nms_thresh: float
) -> tuple[np.ndarray, np.ndarray]:
    """Fill holes and drop islands smaller than ``min_area`` pixels, then NMS again.

    ``masks`` bool (N, H, W) and ``boxes`` (SAM's inclusive xyxy) are updated where a kept mask
    changed. Returns ``(keep, masks)``: the indices of the kept masks (in NMS order) and the
    masks array (edited in place). Needs OpenCV, imported here as segment_anything does.
    """
    import torch
    from segment_anything.utils.amg import batched_mask_to_box, remove_small_regions
    from torchvision.ops import batched_nms

    unchanged = np.zeros(len(masks), dtype=np.float32)
    new_masks = np.empty_like(masks)
    for i, mask in enumerate(masks):
        mask, holes_changed = remove_small_regions(mask, min_area, mode="holes")
        mask, islands_changed = remove_small_regions(mask, min_area, mode="islands")
        new_masks[i] = mask
        # Prefer masks that needed no clean-up when the clean-up creates duplicates.
        unchanged[i] = float(not (holes_changed or islands_changed))
    new_boxes = batched_mask_to_box(torch.from_numpy(new_masks))
    keep = batched_nms(
        new_boxes.float(),
        torch.from_numpy(unchanged),
        torch.zeros(len(new_boxes)),
        iou_threshold=nms_thresh,
    ).numpy()
    changed = keep[unchanged[keep] == 0.0]
    masks[changed] = new_masks[changed]
    boxes[changed] = new_boxes[changed].numpy()
    return keep, masks


def generate_masks(
    segmenter: SamSegmenter,
    image: Any,
    *,
    points_per_side: int | None = 32,
    points_per_batch: int = 64,
    pred_iou_thresh: float = 0.88,
    stability_score_thresh: float = 0.95,
    stability_score_offset: float = 1.0,
    box_nms_thresh: float = 0.7,
    crop_n_layers: int = 0,
    crop_nms_thresh: float = 0.7,
    crop_overlap_ratio: float = 512 / 1500,
    crop_n_points_downscale_factor: int = 1,
    point_grids: list[np.ndarray] | None = None,
    min_mask_region_area: int = 0,
) -> Detections:
    """Masks of everything in ``image``, as SAM's automatic mask generator finds them.

    Args:
        segmenter: a :class:`~grounded_sam.SamSegmenter` (its ``embed``, ``decode`` and
            ``upscale_masks`` are used; the image embedding is taken from its cache when the
            image was embedded before).
        image: anything :func:`grounded_sam.load_image` accepts.
        points_per_side: the grid has ``points_per_side**2`` points over the image; None when
            ``point_grids`` is given instead.
        points_per_batch: points decoded together (memory vs. speed); the decoder runs on
            at most ``segmenter.max_batch`` prompts at a time. The result equals SAM's when
            both batch the same way (other batch sizes change it by float rounding only).
        pred_iou_thresh: keep masks whose predicted IoU is ``>`` this (0 disables the filter).
        stability_score_thresh: keep masks whose stability score is ``>=`` this (0 disables).
        stability_score_offset: the logit offset of the stability score (IoU of the masks
            thresholded at ``mask_threshold ± offset``).
        box_nms_thresh: box IoU above which duplicate masks within one crop are removed.
        crop_n_layers: also run on ``(2**i)**2`` overlapping crops for ``i = 1..n``.
        crop_nms_thresh: box IoU above which duplicates across crops are removed (masks from
            smaller crops are preferred).
        crop_overlap_ratio: overlap of the first layer's crops as a fraction of the short side.
        crop_n_points_downscale_factor: layer ``i`` uses ``points_per_side / factor**i`` points
            per side.
        point_grids: explicit grids, one per layer, float (P, 2) (x, y) normalised to [0, 1].
        min_mask_region_area: if > 0, fill holes and remove islands smaller than this many
            pixels (with OpenCV, a dependency), then de-duplicate again.

    Returns:
        :class:`Detections` with ``masks`` bool (N, H, W) at the original size, ``xyxy``
        float32 (N, 4) tight pixel-edge boxes of the masks, ``scores`` and ``mask_scores`` the
        predicted IoU, ``phrases`` ``""`` and ``class_id`` -1, and ``data`` with
        ``"stability_score"`` float32 (N,), ``"point_coords"`` float32 (N, 2) (the prompt
        point, x, y pixels) and ``"crop_box"`` int64 (N, 4) (xyxy pixels of the crop the mask
        came from). Masks are ordered as SAM's generator orders them (by predicted IoU within
        a crop).
    """
    import torch
    from segment_anything.utils.amg import build_all_layer_point_grids, generate_crop_boxes
    from torchvision.ops import batched_nms, box_area

    from grounded_sam.image import as_rgb
    from grounded_sam.segmenters.amg_options import check_amg_options

    opts = check_amg_options(
        {
            "points_per_side": points_per_side,
            "points_per_batch": points_per_batch,
            "pred_iou_thresh": pred_iou_thresh,
            "stability_score_thresh": stability_score_thresh,
            "stability_score_offset": stability_score_offset,
            "box_nms_thresh": box_nms_thresh,
            "crop_n_layers": crop_n_layers,
            "crop_nms_thresh": crop_nms_thresh,
            "crop_overlap_ratio": crop_overlap_ratio,
            "crop_n_points_downscale_factor": crop_n_points_downscale_factor,
            "point_grids": point_grids,
            "min_mask_region_area": min_mask_region_area,
        }
    )
    points_per_side, point_grids = opts["points_per_side"], opts["point_grids"]
    crop_n_layers = opts["crop_n_layers"]
    if (points_per_side is None) == (point_grids is None):
        raise ValueError(
            "generate_masks: give exactly one of points_per_side (a number) or point_grids "
            f"(a list of (P, 2) arrays); got points_per_side={points_per_side!r} and "
            f"point_grids={'None' if point_grids is None else f'{len(point_grids)} grids'}"
        )
    if points_per_side is not None:
        grids = build_all_layer_point_grids(
            points_per_side, crop_n_layers, crop_n_points_downscale_factor
        )
    else:
        grids = [np.asarray(g, dtype=np.float64).reshape(-1, 2) for g in point_grids or []]
        if len(grids) < crop_n_layers + 1:
            raise ValueError(
                f"generate_masks: point_grids has {len(grids)} grids but crop_n_layers="
                f"{crop_n_layers} needs {crop_n_layers + 1} (one per layer)"
            )
    image = as_rgb(image)
    h, w = image.shape[:2]
    crop_boxes, layer_idxs = generate_crop_boxes((h, w), crop_n_layers, crop_overlap_ratio)

    parts: list[MaskData] = []
    part_boxes: list[list[int]] = []  # the crop of each part
    with torch.inference_mode():
        for crop_box, layer in zip(crop_boxes, layer_idxs, strict=True):
            part = _process_crop(
                segmenter,
                image,
                crop_box,
                grids[layer],
                points_per_batch=points_per_batch,
                pred_iou_thresh=pred_iou_thresh,
                stability_score_thresh=stability_score_thresh,
                stability_score_offset=stability_score_offset,
                box_nms_thresh=box_nms_thresh,
            )
            if part is not None:
                parts.append(part)
                part_boxes.append(crop_box)
        if not parts:
            return _empty(h, w)

        sizes = [len(p["iou"]) for p in parts]
        part_of = np.repeat(np.arange(len(parts)), sizes)  # candidate -> its part
        row_in_part = np.concatenate([np.arange(n) for n in sizes])  # -> its row there
        iou = torch.cat([p["iou"] for p in parts]).float().cpu()
        stability = torch.cat([p["stability"] for p in parts]).float().cpu()
        points = torch.cat([p["points"] for p in parts]).cpu()
        boxes = torch.cat([p["boxes"] for p in parts]).cpu()
        crops = torch.from_numpy(np.repeat(np.array(part_boxes, np.int64), sizes, axis=0))

        order = torch.arange(len(iou))
        if len(crop_boxes) > 1:
            # Duplicates across crops: prefer masks from smaller crops.
            order = batched_nms(
                boxes.float(), 1 / box_area(crops), torch.zeros(len(boxes)), crop_nms_thresh
            )
        order = order.numpy()

        # Unpack only the survivors, each into its crop's window of the full image.
        masks = np.zeros((len(order), h, w), dtype=bool)
        for index, (part, (x0, y0, x1, y1)) in enumerate(zip(parts, part_boxes, strict=True)):
            out_rows = np.flatnonzero(part_of[order] == index)
            if len(out_rows):
                rows = torch.from_numpy(row_in_part[order[out_rows]]).to(part["packed"].device)
                unpacked = _unpack(part["packed"][rows], y1 - y0, x1 - x0)
                masks[out_rows, y0:y1, x0:x1] = unpacked.cpu().numpy()

    iou, stability = iou.numpy()[order], stability.numpy()[order]
    points, boxes, crops = points.numpy()[order], boxes.numpy()[order], crops.numpy()[order]

    if min_mask_region_area > 0:
        keep, masks = _remove_small_regions(
            masks, boxes, min_mask_region_area, max(box_nms_thresh, crop_nms_thresh)
        )
        masks, iou, stability, points, crops = (
            masks[keep],
            iou[keep],
            stability[keep],
            points[keep],
            crops[keep],
        )

    n = len(masks)
    return Detections(
        xyxy=masks_to_xyxy(masks),
        scores=iou,
        phrases=[""] * n,
        class_id=np.full(n, -1, dtype=np.int64),
        masks=masks,
        mask_scores=iou,
        image_size=(h, w),
        data={
            "stability_score": stability.astype(np.float32),
            "point_coords": points.astype(np.float32),
            "crop_box": crops.astype(np.int64),
        },
    )


def _empty(h: int, w: int) -> Detections:
    return Detections(
        xyxy=np.zeros((0, 4), np.float32),
        scores=np.zeros(0, np.float32),
        phrases=[],
        class_id=np.zeros(0, np.int64),
        masks=np.zeros((0, h, w), bool),
        mask_scores=np.zeros(0, np.float32),
        image_size=(h, w),
        data={
            "stability_score": np.zeros(0, np.float32),
            "point_coords": np.zeros((0, 2), np.float32),
            "crop_box": np.zeros((0, 4), np.int64),
        },
    )
