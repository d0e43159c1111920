"""PNG instance masks: values, overlap rule, 8/16-bit, sidecar, readable by PIL and OpenCV."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from grounded_sam.export.png import (
    OVERLAP_RULE,
    PngWriter,
    detections_from_png,
    instance_map,
    read_instance_map,
)
from grounded_sam.types import Detections

CLASSES = ["cat", "dog"]


def dets(masks: np.ndarray, scores, class_id=None, **kw) -> Detections:
    n = len(masks)
    return Detections(
        xyxy=np.tile(np.array([0, 0, masks.shape[2], masks.shape[1]], np.float32), (n, 1)),
        scores=scores,
        phrases=[f"p{i}" for i in range(n)],
        class_id=np.zeros(n, np.int64) if class_id is None else class_id,
        masks=masks,
        image_size=masks.shape[1:],
        **kw,
    )


def test_values_and_overlap_rule():
    masks = np.zeros((3, 10, 10), bool)
    masks[0, 0:6, 0:6] = True  # low score, partly under detection 1
    masks[1, 3:9, 3:9] = True  # high score
    masks[2, 3:9, 3:9] = True  # same area as 1, equal score, later: loses to 1
    inst = instance_map(dets(masks, [0.2, 0.9, 0.9]))
    assert inst.dtype == np.uint8
    assert inst[0, 0] == 1 and inst[5, 5] == 2 and inst[9, 9] == 0
    assert not (inst == 3).any()
    expected = np.zeros((10, 10), np.uint8)
    expected[masks[0]] = 1
    expected[masks[1]] = 2
    np.testing.assert_array_equal(inst, expected)
    # raising detection 0's score puts it on top
    assert instance_map(dets(masks, [0.95, 0.9, 0.9]))[5, 5] == 1


def test_writer_round_trip_with_sidecar(tmp_path):
    rng = np.random.default_rng(0)
    masks = rng.random((4, 30, 40)) < 0.2
    d = dets(
        masks,
        [0.9, 0.8, 0.7, 0.6],
        class_id=[0, 1, -1, 1],
        mask_scores=[0.95, 0.5, 0.9, 0.85],
        data={"needs_review": np.array([False, True, True, False])},
    )
    w = PngWriter(tmp_path, CLASSES)
    assert "sub/x.jpg" not in w
    png = w.add("sub/x.jpg", d)
    assert png == tmp_path / "masks" / "sub" / "x.png" and "sub/x.jpg" in w

    inst = instance_map(d)
    np.testing.assert_array_equal(read_instance_map(png), inst)
    np.testing.assert_array_equal(cv2.imread(str(png), cv2.IMREAD_UNCHANGED), inst)
    assert Image.open(png).mode == "L"

    meta = json.loads((tmp_path / "masks" / "sub" / "x.json").read_text())
    assert meta["overlap"] == OVERLAP_RULE and meta["image_size"] == [30, 40]
    assert [it["value"] for it in meta["instances"]] == [1, 2, 3, 4]
    assert [it["class_name"] for it in meta["instances"]] == ["cat", "dog", "", "dog"]
    assert [it["needs_review"] for it in meta["instances"]] == [False, True, True, False]
    for i, it in enumerate(meta["instances"]):
        assert it["area"] == int(masks[i].sum())
        assert it["visible_area"] == int((inst == i + 1).sum())

    back = detections_from_png(png)
    np.testing.assert_array_equal(back.masks, np.stack([inst == i + 1 for i in range(4)]))
    np.testing.assert_array_equal(back.class_id, d.class_id)
    np.testing.assert_allclose(back.scores, d.scores, atol=1e-6)
    np.testing.assert_array_equal(back.data["needs_review"], d.data["needs_review"])
    assert back.data["class_name"] == ["cat", "dog", "", "dog"]


def test_sixteen_bit_for_many_instances(tmp_path):
    n, h, w = 300, 20, 20
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        masks[i].flat[i] = True  # one pixel each, all visible
    d = dets(masks, np.linspace(0.1, 0.9, n).astype(np.float32))
    png = PngWriter(tmp_path).add("many.png", d)
    assert Image.open(png).mode.startswith("I;16")
    inst = read_instance_map(png)
    assert inst.dtype == np.uint16 and inst.max() == n
    np.testing.assert_array_equal(inst.ravel()[:n], np.arange(1, n + 1))
    np.testing.assert_array_equal(cv2.imread(str(png), cv2.IMREAD_UNCHANGED), inst)


def test_empty_image_and_errors(tmp_path):
    w = PngWriter(tmp_path)
    png = w.add("e.jpg", Detections.empty((5, 6)))
    assert read_instance_map(png).shape == (5, 6) and not read_instance_map(png).any()
    assert len(detections_from_png(png)) == 0
    with pytest.raises(ValueError, match="segment step"):
        instance_map(Detections(xyxy=[[0, 0, 1, 1]], scores=[1], phrases=["a"], class_id=[0]))
