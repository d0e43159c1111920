"""Label Studio pre-annotations, decoded by Label Studio's own brush codec
(label-studio-converter's ``brush`` module, installed by scripts/test.sh)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from urllib.parse import unquote

import numpy as np
import pytest
from PIL import Image

import grounded_sam as gs
from grounded_sam.export.labelstudio import LabelStudioWriter, brush_rle, labelstudio_config
from grounded_sam.masks import rle_to_mask
from grounded_sam.types import Detections

brush = pytest.importorskip("label_studio_converter.brush")

CLASSES = ["cat", "dog & co"]


def ring(h: int, w: int) -> np.ndarray:
    """A disc with a hole plus a separate square: holes and several parts."""
    yy, xx = np.mgrid[:h, :w]
    d2 = (yy - h / 2) ** 2 + (xx - w / 3) ** 2
    m = (d2 <= (h / 3) ** 2) & (d2 >= (h / 8) ** 2)
    m[1:4, w - 5 : w - 1] = True
    return m


def decoded(rle: list[int], h: int, w: int) -> np.ndarray:
    """bool (H, W): Label Studio's decoder, alpha channel of the RGBA image."""
    return brush.decode_rle(rle).reshape(h, w, 4)[..., 3] > 0


@pytest.mark.parametrize(
    "mask",
    [
        ring(40, 56),
        np.zeros((7, 5), bool),
        np.ones((300, 301), bool),  # runs over 65,536 values are split
        np.random.default_rng(0).random((33, 17)) > 0.5,  # speckle: runs of one pixel
    ],
    ids=["ring", "empty", "full-large", "speckle"],
)
def test_label_studio_decodes_our_rle_to_the_mask(mask):
    rle = brush_rle(mask)
    np.testing.assert_array_equal(decoded(rle, *mask.shape), mask)
    # and the bytes are the ones Label Studio's own encoder writes for the same mask
    assert rle == list(brush.mask2rle(mask.astype(np.uint8) * 255))


def test_config_has_one_label_per_class_in_order():
    root = ET.fromstring(labelstudio_config(CLASSES))
    (labels,) = root.iter("BrushLabels")
    assert labels.get("name") == "label" and labels.get("toName") == "image"
    assert [lab.get("value") for lab in labels.iter("Label")] == CLASSES


def test_a_task_keeps_scores_labels_and_review_flags():
    m = ring(40, 56)
    d = Detections(
        xyxy=[[0, 0, 50, 30], [0, 0, 5, 5], [1, 1, 9, 9]],
        scores=[0.8, 0.3, 0.6],
        phrases=["cat", "thing", "dog"],
        class_id=[0, -1, 1],
        masks=np.stack([m, m, np.zeros_like(m)]),
        image_size=m.shape,
        data={"needs_review": [True, False, False]},
    )
    w = LabelStudioWriter(CLASSES)
    task = w.add("sub/a b.jpg", d, image="photos/sub/a b.jpg")
    assert task["data"]["image"] == "/data/local-files/?d=photos/sub/a%20b.jpg"
    assert task["data"]["needs_review"] is True and task["data"]["review_count"] == 1
    (pred,) = task["predictions"]
    (region,) = pred["result"]  # no class and empty mask: left out
    assert region["value"]["brushlabels"] == ["cat"]
    assert region["score"] == pytest.approx(0.8) and pred["score"] == pytest.approx(0.8)
    assert region["meta"] == {"text": ["needs review"]}
    assert (region["original_height"], region["original_width"]) == m.shape
    np.testing.assert_array_equal(decoded(region["value"]["rle"], *m.shape), m)


def test_auto_label_writes_tasks_whose_masks_equal_the_coco_masks(tmp_path):
    import torch

    torch.set_num_threads(2)
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for name in ("a.png", "sub/b.jpg"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(photos / name)
    pipe = gs.Pipeline.tiny_random(["cat", "dog"], top_k=3)
    out = tmp_path / "out"
    summary = gs.auto_label(
        pipe, photos, ["cat", "dog"], out, formats="coco,labelstudio", progress=False
    )
    tasks = json.loads((out / "labelstudio" / "tasks.json").read_text())
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert (out / "labelstudio" / "config.xml").is_file()
    readme = (out / "labelstudio" / "README.txt").read_text()
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={tmp_path}" in readme
    ids = {img["file_name"]: img["id"] for img in coco["images"]}
    regions = 0
    for task in tasks:
        # the local-files path, resolved against the document root, is the image
        rel = unquote(task["data"]["image"].split("?d=", 1)[1])
        assert (tmp_path / rel).resolve() == (photos / task["data"]["file_name"]).resolve()
        theirs = [a for a in coco["annotations"] if a["image_id"] == ids[task["data"]["file_name"]]]
        result = task["predictions"][0]["result"]
        assert len(result) == len(theirs)
        for region, ann in zip(result, theirs, strict=True):
            h, w = region["original_height"], region["original_width"]
            np.testing.assert_array_equal(
                decoded(region["value"]["rle"], h, w), rle_to_mask(ann["segmentation"])
            )
            assert region["value"]["brushlabels"] == [["cat", "dog"][ann["category_id"] - 1]]
        regions += len(result)
    assert summary.exported["labelstudio"] == regions == len(coco["annotations"]) > 0
