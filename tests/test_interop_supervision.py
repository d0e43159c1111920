"""Detections <-> supervision's sv.Detections, and our COCO file read by sv.DetectionDataset."""

from __future__ import annotations

import numpy as np
import pytest
from _images import blob_image
from PIL import Image

from grounded_sam.export.coco import CocoWriter
from grounded_sam.types import Detections

sv = pytest.importorskip("supervision")

CLASSES = ["cat", "dog"]


def blobs(h: int, w: int, n: int, seed: int) -> np.ndarray:
    """bool (n, h, w): random discs, one per detection."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = []
    for _ in range(n):
        cy, cx, r = rng.integers(5, h - 5), rng.integers(5, w - 5), rng.integers(3, 9)
        out.append((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r)
    return np.stack(out)


def detections(h: int = 40, w: int = 56, seed: int = 0) -> Detections:
    masks = blobs(h, w, 3, seed)
    ys, xs = np.nonzero(masks[0])
    return Detections(
        xyxy=[[1, 2, 30, 20], [5, 5, 9, 9], [0, 0, 55, 39]],
        scores=[0.9, 0.4, 0.7],
        phrases=["cat", "thing", "dog"],
        class_id=[0, -1, 1],
        masks=masks,
        mask_scores=[0.8, 0.5, 0.95],
        image_size=(h, w),
        data={"class_name": ["cat", "", "dog"], "needs_review": np.array([False, True, False])},
    )


def test_round_trip_keeps_every_field():
    d = detections()
    s = d.to_supervision()
    assert isinstance(s, sv.Detections) and len(s) == 3
    np.testing.assert_array_equal(s.mask, d.masks)
    np.testing.assert_array_equal(s.class_id, d.class_id)
    np.testing.assert_array_equal(s.confidence, d.scores)
    assert list(s.data["phrase"]) == d.phrases
    back = Detections.from_supervision(s)
    for key in ("xyxy", "scores", "class_id", "masks", "mask_scores"):
        np.testing.assert_array_equal(getattr(back, key), getattr(d, key))
    assert back.phrases == d.phrases and back.image_size == d.image_size
    assert list(back.data["class_name"]) == ["cat", "", "dog"]
    np.testing.assert_array_equal(back.data["needs_review"], [False, True, False])
    # supervision's own slicing keeps our fields together
    sub = Detections.from_supervision(s[s.confidence > 0.5])
    assert sub.phrases == ["cat", "dog"] and sub.class_id.tolist() == [0, 1]


def test_without_masks_the_image_size_travels_in_the_metadata():
    d = detections().replace(masks=None)
    assert Detections.from_supervision(d.to_supervision()).image_size == (40, 56)
    bare = sv.Detections(xyxy=np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="image_size"):
        Detections.from_supervision(bare)
    got = Detections.from_supervision(bare, image_size=(4, 5))
    assert got.class_id.tolist() == [-1] and got.scores.tolist() == [1.0]


def test_our_coco_loads_in_supervision_with_identical_masks(tmp_path):
    writer = CocoWriter(CLASSES)
    ours = {}
    for i in range(2):
        d = detections(seed=i)
        name = f"img{i}.png"
        Image.fromarray(blob_image(40, 56, seed=i)).save(tmp_path / name)
        writer.add(name, d)
        ours[name] = d[d.class_id >= 0]  # COCO holds the detections with a class
    writer.write(tmp_path / "annotations.coco.json")

    ds = sv.DetectionDataset.from_coco(
        images_directory_path=str(tmp_path),
        annotations_path=str(tmp_path / "annotations.coco.json"),
        force_masks=True,
    )
    assert ds.classes == CLASSES and len(ds) == 2
    for path, _image, theirs in ds:
        mine = ours[path.replace("\\", "/").rsplit("/", 1)[-1]]
        np.testing.assert_array_equal(theirs.mask, mine.masks)
        np.testing.assert_array_equal(theirs.class_id, mine.class_id)
        back = Detections.from_supervision(theirs)
        np.testing.assert_array_equal(back.masks, mine.masks)
