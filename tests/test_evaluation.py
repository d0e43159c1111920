"""evaluate(): pycocotools AP/AR of an export against ground truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grounded_sam.evaluation import METRICS, evaluate
from grounded_sam.export.coco import CocoWriter
from grounded_sam.types import Detections

CLASSES = ["cat", "dog"]
H, W = 240, 320


def shapes(seed: int, n: int = 5) -> Detections:
    """Ellipses and rectangles of small, medium and large sizes; some with holes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    masks = np.zeros((n, H, W), bool)
    for i in range(n):
        r = [6, 14, 40, 70, 25][i % 5]
        cy, cx = rng.integers(r, H - r), rng.integers(r, W - r)
        if i % 2:
            masks[i] = ((yy - cy) / r) ** 2 + ((xx - cx) / (0.7 * r)) ** 2 <= 1
        else:
            masks[i, cy - r : cy + r, cx - r : cx + r] = True
            if r >= 14:
                masks[i, cy - r // 3 : cy + r // 3, cx - r // 3 : cx + r // 3] = False  # a hole
    return Detections(
        xyxy=np.tile(np.array([0, 0, W, H], np.float32), (n, 1)),
        scores=rng.uniform(0.3, 1.0, n).astype(np.float32),
        phrases=[""] * n,
        class_id=np.arange(n) % 2,
        masks=masks,
        image_size=(H, W),
    )


@pytest.fixture(scope="module")
def dataset() -> dict[str, Detections]:
    return {f"img{i}.jpg": shapes(i) for i in range(4)}


def export(items: dict[str, Detections], classes=CLASSES) -> CocoWriter:
    w = CocoWriter(classes)
    for name, d in items.items():
        w.add(name, d)
    return w


def test_export_against_itself_is_perfect(dataset, tmp_path):
    writer = export(dataset)
    gt = writer.to_dict(scores=False)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    pred_path = writer.write(tmp_path / "pred.json")
    for preds, truth in ((writer.to_dict(), gt), (pred_path, tmp_path / "gt.json"), (writer, gt)):
        m = evaluate(preds, truth)
        for iou_type in ("bbox", "segm"):
            assert set(m[iou_type]) == set(METRICS)
            assert all(isinstance(v, float) for v in m[iou_type].values())
            assert m[iou_type]["AP"] == pytest.approx(1.0)
            assert m[iou_type]["AP50"] == pytest.approx(1.0)
            assert m[iou_type]["AP75"] == pytest.approx(1.0)
            assert m[iou_type]["AR100"] == pytest.approx(1.0)
            for size in ("APs", "APm", "APl"):  # every size range has objects here
                assert m[iou_type][size] == pytest.approx(1.0)
        assert m["counts"] == {
            "images": 4,
            "ground_truth": 20,
            "predictions": 20,
            "predictions_left_out": 0,
        }


def test_perturbed_predictions_score_lower(dataset):
    gt = export(dataset).to_dict(scores=False)
    moved = {}
    for name, d in dataset.items():
        masks = d.masks.copy()
        masks[::2] = np.roll(masks[::2], shift=8, axis=2)  # every other instance moves 8 px
        moved[name] = d.replace(masks=masks)
    m = evaluate(export(moved), gt)
    for iou_type in ("bbox", "segm"):
        assert m[iou_type]["AP"] < 0.9
        assert m[iou_type]["AP75"] < 1.0
    # wrong classes are misses too
    swapped = {n: d.replace(class_id=1 - d.class_id) for n, d in dataset.items()}
    assert evaluate(export(swapped), gt, iou_types=["segm"])["segm"]["AP"] == pytest.approx(0.0)


def test_predictions_matched_by_file_name_and_class_name(dataset):
    gt = export(dataset).to_dict(scores=False)
    # predictions written in another image order, with classes in another order, plus an
    # image the ground truth does not have: ids differ but names match
    items = dict(reversed(list(dataset.items())))
    items = {n: d.replace(class_id=1 - d.class_id) for n, d in items.items()}
    items["extra.jpg"] = shapes(99)
    m = evaluate(export(items, classes=["dog", "cat"]), gt)
    assert m["segm"]["AP"] == pytest.approx(1.0) and m["bbox"]["AP"] == pytest.approx(1.0)
    assert m["counts"]["predictions_left_out"] == 5

    # a labelled subset: only ground-truth images that the predictions cover count
    subset = {k: dataset[k] for k in ("img0.jpg", "img2.jpg")}
    m = evaluate(export(subset), gt)
    assert m["counts"]["images"] == 2 and m["segm"]["AP"] == pytest.approx(1.0)


def test_results_list_and_empty_predictions(dataset, tmp_path):
    writer = export(dataset)
    gt = writer.to_dict(scores=False)
    results = [
        {k: a[k] for k in ("image_id", "category_id", "segmentation", "score")}
        for a in writer.to_dict()["annotations"]
    ]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert evaluate(path, gt, iou_types=["segm"])["segm"]["AP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="'bbox'"):
        evaluate(results, gt, iou_types=["bbox"])

    empty = evaluate([], gt)
    assert empty["bbox"]["AP"] == 0.0 and empty["segm"]["AR100"] == 0.0


def test_bad_inputs(dataset):
    writer = export(dataset)
    gt = writer.to_dict(scores=False)
    with pytest.raises(ValueError, match="score"):
        evaluate(gt, gt)
    with pytest.raises(ValueError, match="iou_types"):
        evaluate(writer, gt, iou_types=["keypoints"])
    stray = [{"image_id": 999, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1.0}]
    with pytest.raises(ValueError, match="999"):
        evaluate(stray, gt, iou_types=["bbox"])
    with pytest.raises(FileNotFoundError):
        evaluate("/nonexistent/pred.json", gt)


def test_gs_evaluate_is_the_function_after_importing_its_module(dataset):
    import grounded_sam as gs
    from grounded_sam.evaluation import evaluate as fn  # binds the submodule on the package

    writer = export(dataset)
    gt = writer.to_dict(scores=False)
    assert callable(gs.evaluate)
    assert gs.evaluate(writer, gt, iou_types=["bbox"]) == fn(writer, gt, iou_types=["bbox"])
