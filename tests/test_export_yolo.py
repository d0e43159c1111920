"""YOLO-seg export: polygons fill back to the masks, every part is written, data.yaml loads."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml

from grounded_sam.export.yolo import (
    YoloWriter,
    mask_to_polygons,
    polygons_from_line,
    yolo_lines,
)
from grounded_sam.types import Detections

CLASSES = ["cat", "dog"]


def ring_and_parts(h: int = 40, w: int = 50) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[5:30, 5:30] = True
    m[12:20, 12:20] = False  # a hole
    m[15:17, 15:17] = True  # an island in the hole
    m[10:35, 35:45] = True  # a second part
    m[36:39, 2:4] = True  # a tiny third part
    return m


def blobs(seed: int, h: int = 60, w: int = 80) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 2 + seed % 3) > 0.5


def fill(polygons, shape) -> np.ndarray:
    """Rasterise as Ultralytics does: cv2.fillPoly of each polygon."""
    out = np.zeros(shape, np.uint8)
    for p in polygons:
        cv2.fillPoly(out, [np.asarray(p, np.int32)], 1)
    return out.astype(bool)


MASKS = [ring_and_parts()] + [blobs(s) for s in range(6)]


@pytest.mark.parametrize("mask", MASKS, ids=[f"mask{i}" for i in range(len(MASKS))])
def test_split_mode_fills_back_exactly_with_holes_and_parts(mask):
    polys = mask_to_polygons(mask, mode="split")
    n_parts = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1
    assert len(polys) == n_parts  # every part of a multi-part mask
    assert all(p.shape[1] == 2 and len(p) >= 3 for p in polys)
    np.testing.assert_array_equal(fill(polys, mask.shape), mask)


@pytest.mark.parametrize("mask", MASKS, ids=[f"mask{i}" for i in range(len(MASKS))])
def test_merge_mode_is_one_polygon_that_misses_nothing(mask):
    (poly,) = mask_to_polygons(mask, mode="merge")
    filled = fill([poly], mask.shape)
    assert not (mask & ~filled).any()  # every pixel, every part
    extra = filled & ~mask  # only the one-pixel bridges between parts
    assert extra.sum() <= 0.05 * mask.sum()


def test_holes_stay_empty():
    m = np.zeros((50, 50), bool)
    m[5:45, 5:45] = True
    m[15:35, 15:35] = False
    for mode in ("merge", "split"):
        np.testing.assert_array_equal(fill(mask_to_polygons(m, mode=mode), m.shape), m)


def test_lines_are_normalised_and_parse_back():
    masks = np.stack([ring_and_parts(), blobs(1, 40, 50), np.zeros((40, 50), bool)])
    d = Detections(
        xyxy=np.tile(np.array([0, 0, 50, 40], np.float32), (3, 1)),
        scores=[0.9, 0.8, 0.7],
        phrases=["cat", "dog", "cat"],
        class_id=[0, 1, 0],
        masks=masks,
        image_size=(40, 50),
    )
    lines = yolo_lines(d, mode="split")
    by_class: dict[int, list] = {0: [], 1: []}
    for line in lines:
        values = [float(v) for v in line.split()[1:]]
        assert len(values) % 2 == 0 and len(values) >= 6
        assert all(0.0 <= v <= 1.0 for v in values)
        cid, poly = polygons_from_line(line, d.image_size)
        by_class[cid].append(poly)
    np.testing.assert_array_equal(fill(by_class[0], (40, 50)), masks[0])  # empty mask: no line
    np.testing.assert_array_equal(fill(by_class[1], (40, 50)), masks[1])
    assert len(yolo_lines(d, mode="merge")) == 2  # one line per non-empty instance


def test_writer_files_data_yaml_and_resume(tmp_path):
    img = tmp_path / "src" / "sub" / "a.jpg"
    img.parent.mkdir(parents=True)
    img.write_bytes(b"not really a jpeg")
    m = ring_and_parts()
    d = Detections(
        xyxy=[[2, 5, 45, 39], [0, 0, 10, 10]],
        scores=[0.9, 0.5],
        phrases=["dog", "thing"],
        class_id=[1, -1],
        masks=np.stack([m, m]),
        image_size=m.shape,
    )
    w = YoloWriter(tmp_path / "ds", CLASSES, images="copy")
    assert "sub/a.jpg" not in w
    label = w.add("sub/a.jpg", d, image_path=img)
    assert label == tmp_path / "ds" / "labels" / "sub" / "a.txt"
    assert "sub/a.jpg" in w
    lines = label.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("1 ")  # the unknown one is left out
    assert w.dropped_unknown == 1
    assert (tmp_path / "ds" / "images" / "sub" / "a.jpg").read_bytes() == img.read_bytes()

    w.add("b.jpg", Detections.empty((40, 50)), image_path=img)
    assert (tmp_path / "ds" / "labels" / "b.txt").read_text() == ""  # a background image

    data = yaml.safe_load(w.write_data_yaml().read_text())
    assert data["nc"] == 2 and data["names"] == {0: "cat", 1: "dog"}
    assert data["path"] == str((tmp_path / "ds").resolve())
    assert data["train"] == data["val"] == "images"
    leftovers = [p for p in (tmp_path / "ds").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_writer_errors():
    w = YoloWriter("unused", CLASSES)
    d = Detections(
        xyxy=[[0, 0, 1, 1]],
        scores=[1.0],
        phrases=["x"],
        class_id=[5],
        masks=np.ones((1, 4, 4), bool),
        image_size=(4, 4),
    )
    with pytest.raises(ValueError, match="out of range"):
        w.add("a.jpg", d)
    with pytest.raises(ValueError, match="segment step"):
        yolo_lines(d.replace(masks=None))
    with pytest.raises(ValueError, match="relative"):
        w.label_path("/abs/a.jpg")
    with pytest.raises(ValueError, match=r"\.\."):
        w.label_path("../a.jpg")
    with pytest.raises(ValueError, match="mode"):
        mask_to_polygons(np.ones((3, 3), bool), mode="zigzag")
    assert mask_to_polygons(np.zeros((3, 3), bool)) == []
    (single,) = mask_to_polygons(np.pad(np.ones((1, 1), bool), 2))
    assert single.tolist() == [[2, 2]] * 3


def test_writer_can_symlink_images(tmp_path):
    img = tmp_path / "a.png"
    img.write_bytes(b"pixels")
    w = YoloWriter(tmp_path / "ds", CLASSES, images="link")
    w.add("a.png", Detections.empty((4, 4)), image_path=img)
    link = tmp_path / "ds" / "images" / "a.png"
    assert link.is_symlink() and link.resolve() == img.resolve()
    w.add("a.png", Detections.empty((4, 4)), image_path=img)  # again (a resumed run): replaced
    assert link.read_bytes() == b"pixels"
    with pytest.raises(ValueError, match="image_path"):
        w.add("b.png", Detections.empty((4, 4)))


def test_writer_with_a_split_writes_train_and_val_folders(tmp_path):
    img = tmp_path / "a.png"
    img.write_bytes(b"pixels")
    split = {"a.png": "train", "b.png": "val"}
    w = YoloWriter(tmp_path / "ds", CLASSES, images="copy", split=split)
    for name in split:
        w.add(name, Detections.empty((4, 4)), image_path=img)
        assert name in w
    assert (tmp_path / "ds" / "labels" / "val" / "b.txt").read_text() == ""
    assert (tmp_path / "ds" / "images" / "train" / "a.png").read_bytes() == b"pixels"
    data = yaml.safe_load(w.write_data_yaml().read_text())
    assert (data["train"], data["val"]) == ("images/train", "images/val")
    with pytest.raises(ValueError, match="images must be one of"):
        YoloWriter(tmp_path / "x", CLASSES, images="hardlink")


def test_a_speckled_mask_costs_a_bounded_time():
    """50 % noise at 640x480 (what random weights give): thousands of parts and holes, of
    which the largest MAX_PARTS / MAX_HOLES are kept; it took 38 s per mask unbounded."""
    import time

    from grounded_sam.export.yolo import MAX_PARTS

    speckle = np.random.default_rng(0).random((480, 640)) > 0.5
    started = time.perf_counter()
    (merged,) = mask_to_polygons(speckle, mode="merge")
    parts = mask_to_polygons(speckle, mode="split")
    assert time.perf_counter() - started < 10
    assert len(parts) == MAX_PARTS
    assert len(merged) >= max(len(p) for p in parts)
