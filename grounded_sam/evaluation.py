"""COCO box and mask AP/AR of predictions against ground truth, computed by pycocotools.

For users who want to know how well a prompt set works on a labelled subset of their data:
label the folder with ``auto_label`` (or any COCO results), label a few images by hand, and
call :func:`evaluate`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from grounded_sam.export.coco import CocoWriter

# COCOeval.stats, in order
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
IOU_TYPES = ("bbox", "segm")

CocoSource = str | Path | Mapping[str, Any]


def evaluate(
    predictions: CocoSource | Sequence[Mapping[str, Any]] | CocoWriter,
    ground_truth: CocoSource | CocoWriter,
    *,
    iou_types: Sequence[str] = IOU_TYPES,
    quiet: bool = True,
) -> dict[str, dict[str, float]]:
    """COCO AP/AR of ``predictions`` against ``ground_truth``, per IoU type.

    Args:
        predictions: a COCO dataset (dict, JSON path or :class:`~grounded_sam.export.coco.CocoWriter`)
            whose annotations carry ``score``, or a COCO *results* list
            (``[{"image_id", "category_id", "score", "bbox" and/or "segmentation"}, ...]``,
            as a list or a JSON path) whose ids already are the ground truth's ids.
        ground_truth: a COCO dataset (dict, JSON path or writer). ``iscrowd`` defaults to 0;
            ``area`` defaults to the mask's (RLE) or the box's area.
        iou_types: any of ``"bbox"`` and ``"segm"``.
        quiet: silence pycocotools' prints.

    When ``predictions`` is a dataset (it has ``images`` and ``categories``), its images are
    matched to the ground truth's by ``file_name`` and its categories by ``name``; images
    and categories that the ground truth lacks are left out, and only the ground-truth images
    that the predictions cover are evaluated (a labelled subset of a labelled folder).

    Returns:
        ``{iou_type: {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs",
        "ARm", "ARl"}}`` as plain floats in [0, 1] (-1.0 where COCO leaves a metric undefined,
        e.g. no ground truth of that size), plus ``"counts"``: ``images``, ``ground_truth``,
        ``predictions`` (evaluated) and ``predictions_left_out``.

    Raises:
        ValueError: an unknown IoU type, predictions without ``score``, results whose ids
            are not in the ground truth, or a missing ``bbox``/``segmentation``.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    iou_types = tuple(iou_types)
    bad = [t for t in iou_types if t not in IOU_TYPES]
    if bad or not iou_types:
        raise ValueError(f"iou_types must be a non-empty subset of {IOU_TYPES}, got {iou_types}")

    gt = _ground_truth_dict(ground_truth)
    results, img_ids, left_out = _results(predictions, gt)
    for i, r in enumerate(results):
        if "score" not in r:
            raise ValueError(
                f"prediction {i} has no 'score': predictions need the detector's confidence "
                f"(a file written without scores is ground truth, not predictions)"
            )

    silence = contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()
    out: dict[str, dict[str, float]] = {}
    with silence:
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        for iou_type in iou_types:
            coco_dt = _load_results(coco_gt, results, iou_type)
            ev = COCOeval(coco_gt, coco_dt, iouType=iou_type)
            ev.params.imgIds = sorted(img_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            out[iou_type] = {name: float(v) for name, v in zip(METRICS, ev.stats, strict=True)}
    img_set = set(img_ids)
    out["counts"] = {
        "images": len(img_ids),
        "ground_truth": sum(1 for a in gt["annotations"] if a["image_id"] in img_set),
        "predictions": len(results),
        "predictions_left_out": left_out,
    }
    return out


def _ground_truth_dict(source: Any) -> dict[str, Any]:
    from grounded_sam.export.coco import load_coco
    from grounded_sam.masks import rle_to_mask

    gt = copy.deepcopy(load_coco(source))
    gt.setdefault("annotations", [])
    gt.setdefault("categories", [])
    for ann in gt["annotations"]:
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            seg = ann.get("segmentation")
            if isinstance(seg, Mapping):
                ann["area"] = int(rle_to_mask(seg).sum())
            elif "bbox" in ann:
                ann["area"] = float(ann["bbox"][2] * ann["bbox"][3])
            else:
                raise ValueError(
                    f"ground-truth annotation {ann.get('id')} has no area, mask or box"
                )
    return gt


def _results(predictions: Any, gt: dict[str, Any]) -> tuple[list[dict[str, Any]], list[int], int]:
    """Prediction results in the ground truth's ids, the image ids to evaluate, #left out."""
    from grounded_sam.export.coco import CocoWriter

    if isinstance(predictions, CocoWriter):
        predictions = predictions.to_dict()
    elif isinstance(predictions, str | Path):
        path = Path(predictions)
        if not path.exists():
            raise FileNotFoundError(f"predictions file not found: {path}")
        predictions = json.loads(path.read_text(encoding="utf-8"))

    gt_img_ids = [im["id"] for im in gt["images"]]
    if isinstance(predictions, Mapping):
        if "images" not in predictions or "categories" not in predictions:
            raise ValueError("predictions dict must be a COCO dataset with images and categories")
        img_by_name = {im["file_name"]: im["id"] for im in gt["images"]}
        cat_by_name = {c["name"]: c["id"] for c in gt["categories"]}
        img_map = {
            im["id"]: img_by_name[im["file_name"]]
            for im in predictions["images"]
            if im["file_name"] in img_by_name
        }
        cat_map = {
            c["id"]: cat_by_name[c["name"]]
            for c in predictions["categories"]
            if c["name"] in cat_by_name
        }
        results, left_out = [], 0
        for ann in predictions.get("annotations", []):
            if ann["image_id"] in img_map and ann["category_id"] in cat_map:
                r = copy.deepcopy(dict(ann))
                r["image_id"] = img_map[ann["image_id"]]
                r["category_id"] = cat_map[ann["category_id"]]
                results.append(r)
            else:
                left_out += 1
        covered = set(img_map.values())
        return results, [i for i in gt_img_ids if i in covered], left_out

    if not isinstance(predictions, Sequence):
        raise ValueError(
            f"predictions must be a COCO dict, a results list or a JSON path, "
            f"got {type(predictions).__name__}"
        )
    results = [copy.deepcopy(dict(r)) for r in predictions]
    known = set(gt_img_ids)
    cats = {c["id"] for c in gt["categories"]}
    stray = sorted({r["image_id"] for r in results} - known)
    stray_cats = sorted({r["category_id"] for r in results} - cats)
    if stray or stray_cats:
        raise ValueError(
            f"results refer to image ids {stray[:10]} / category ids {stray_cats[:10]} that the "
            f"ground truth does not have; pass the predictions as a COCO dataset (with images "
            f"and categories) to match them by file name and class name"
        )
    return results, gt_img_ids, 0


def _load_results(coco_gt: Any, results: list[dict[str, Any]], iou_type: str) -> Any:
    """pycocotools' result set for one IoU type (``loadRes``; an empty set when no results)."""
    from pycocotools.coco import COCO

    key = "bbox" if iou_type == "bbox" else "segmentation"
    missing = [i for i, r in enumerate(results) if key not in r]
    if missing:
        raise ValueError(
            f"{len(missing)} predictions have no {key!r}, which iou_type {iou_type!r} needs "
            f"(first: prediction {missing[0]})"
        )
    if not results:
        empty = COCO()
        empty.dataset = {
            "images": copy.deepcopy(coco_gt.dataset["images"]),
            "categories": copy.deepcopy(coco_gt.dataset["categories"]),
            "annotations": [],
        }
        empty.createIndex()
        return empty
    anns = copy.deepcopy(results)
    if iou_type == "segm":
        # without 'bbox', loadRes takes area and box from the mask, as COCO does for masks
        for a in anns:
            a.pop("bbox", None)
    return coco_gt.loadRes(anns)
