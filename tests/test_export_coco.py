"""COCO export: pycocotools reads it, masks round-trip exactly, area/bbox come from the mask."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from grounded_sam.export.coco import CocoWriter, detections_from_coco, load_coco
from grounded_sam.types import Detections

# pycocotools' decode warns under numpy 2 (its own code, not ours)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

CLASSES = ["cat", "dog", "traffic light"]


def ring_and_parts(h: int = 40, w: int = 50) -> np.ndarray:
    """A square with a hole, an island inside the hole, and a second, separate part."""
    m = np.zeros((h, w), bool)
    m[5:30, 5:30] = True
    m[12:20, 12:20] = False
    m[15:17, 15:17] = True
    m[10:35, 35:45] = True
    m[36:39, 2:4] = True
    return m


def make_detections(seed: int, h: int = 40, w: int = 50, n: int = 4) -> Detections:
    rng = np.random.default_rng(seed)
    masks = rng.random((n, h, w)) < 0.3  # speckle: many parts and holes each
    masks[0] = ring_and_parts(h, w)
    # xyxy deliberately loose: the export must take the box from the mask
    xyxy = np.tile(np.array([0, 0, w, h], np.float32), (n, 1))
    return Detections(
        xyxy=xyxy,
        scores=rng.uniform(0.1, 1.0, n).astype(np.float32),
        phrases=[CLASSES[i % 3] for i in range(n)],
        class_id=np.arange(n) % 3,
        masks=masks,
        mask_scores=rng.uniform(0.5, 1.0, n).astype(np.float32),
        image_size=(h, w),
        data={"needs_review": np.arange(n) % 2 == 0},
    )


def quiet_coco(path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def test_export_loads_in_pycocotools_and_masks_round_trip(tmp_path):
    writer = CocoWriter(CLASSES)
    dets = {f"img{i}.jpg": make_detections(i) for i in range(3)}
    for name, d in dets.items():
        writer.add(name, d)
    path = writer.write(tmp_path / "out.json")

    coco = quiet_coco(path)
    assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == sorted(CLASSES)
    assert [c["id"] for c in coco.dataset["categories"]] == [1, 2, 3]
    for name, d in dets.items():
        (img,) = [im for im in coco.dataset["images"] if im["file_name"] == name]
        assert (img["height"], img["width"]) == d.image_size
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]]))
        assert len(anns) == len(d)
        for ann, mask, cid, score in zip(anns, d.masks, d.class_id, d.scores, strict=True):
            assert isinstance(ann["segmentation"]["counts"], str)
            decoded = mask_utils.decode(ann["segmentation"]).astype(bool)
            np.testing.assert_array_equal(decoded, mask)  # exact, holes and parts included
            assert coco.annToMask(ann).astype(bool).sum() == mask.sum()
            assert ann["area"] == int(mask.sum())
            assert ann["area"] == int(mask_utils.area(ann["segmentation"]))
            ys, xs = np.nonzero(mask)
            expected = [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]
            assert ann["bbox"] == pytest.approx(expected)
            assert ann["bbox"] == pytest.approx(mask_utils.toBbox(ann["segmentation"]).tolist())
            assert ann["iscrowd"] == 0
            assert ann["category_id"] == int(cid) + 1
            assert ann["score"] == pytest.approx(float(score), abs=1e-6)

    # predictions are readable by loadRes too (the results format)
    with contextlib.redirect_stdout(io.StringIO()):
        res = coco.loadRes(json.loads(path.read_text())["annotations"])
    assert len(res.getAnnIds()) == sum(len(d) for d in dets.values())


def test_hole_and_parts_mask_is_one_non_crowd_instance(tmp_path):
    m = ring_and_parts()
    d = Detections(
        xyxy=[[5, 5, 45, 39]],
        scores=[0.9],
        phrases=["cat"],
        class_id=[0],
        masks=m[None],
        image_size=m.shape,
    )
    w = CocoWriter(CLASSES)
    w.add("a.png", d)
    (ann,) = w.to_dict()["annotations"]
    assert ann["iscrowd"] == 0 and ann["area"] == int(m.sum())
    assert ann["bbox"] == [2.0, 5.0, 43.0, 34.0]
    np.testing.assert_array_equal(mask_utils.decode(ann["segmentation"]).astype(bool), m)


def test_review_fields_and_ground_truth_without_scores():
    w = CocoWriter(CLASSES)
    d = make_detections(0)
    w.add("a.jpg", d)
    anns = w.to_dict()["annotations"]
    assert [a["needs_review"] for a in anns] == d.data["needs_review"].tolist()
    assert [a["phrase"] for a in anns] == d.phrases
    assert [a["mask_score"] for a in anns] == pytest.approx(d.mask_scores.tolist(), abs=1e-6)
    assert all("score" not in a for a in w.to_dict(scores=False)["annotations"])


def test_unknown_class_dropped_or_kept_in_extra_category():
    d = make_detections(1).replace(class_id=np.array([0, -1, 2, -1]))
    dropped = CocoWriter(CLASSES)
    dropped.add("a.jpg", d)
    out = dropped.to_dict()
    assert [a["category_id"] for a in out["annotations"]] == [1, 3]
    assert out["info"]["dropped_unknown"] == 2
    assert [c["name"] for c in out["categories"]] == CLASSES

    kept = CocoWriter(CLASSES, unknown="category")
    kept.add("a.jpg", d)
    out = kept.to_dict()
    assert [a["category_id"] for a in out["annotations"]] == [1, 4, 3, 4]
    assert out["categories"][-1] == {"id": 4, "name": "unknown", "supercategory": ""}
    back = detections_from_coco(out, "a.jpg")
    np.testing.assert_array_equal(back.class_id, d.class_id)


def test_empty_masks_and_images_without_detections():
    d = make_detections(2)
    masks = d.masks.copy()
    masks[1] = False
    w = CocoWriter(CLASSES)
    w.add("a.jpg", d.replace(masks=masks))
    w.add("b.jpg", Detections.empty((40, 50)))
    out = w.to_dict()
    assert len(out["annotations"]) == 3 and out["info"]["dropped_empty"] == 1
    assert [im["file_name"] for im in out["images"]] == ["a.jpg", "b.jpg"]
    assert [a["id"] for a in out["annotations"]] == [1, 2, 3]


def test_resumed_writer_produces_the_same_file(tmp_path):
    items = [(f"dir/img{i}.jpg", make_detections(10 + i)) for i in range(5)]
    full = CocoWriter(CLASSES)
    for name, d in items:
        full.add(name, d)
    full.write(tmp_path / "full.json")

    part = CocoWriter(CLASSES)
    for name, d in items[:2]:
        part.add(name, d)
    part.write(tmp_path / "resumed.json")
    resumed = CocoWriter.load(tmp_path / "resumed.json")
    assert len(resumed) == 2 and "dir/img1.jpg" in resumed and "dir/img2.jpg" not in resumed
    for name, d in items:
        if name not in resumed:
            resumed.add(name, d)
    resumed.write(tmp_path / "resumed.json")
    assert (tmp_path / "resumed.json").read_bytes() == (tmp_path / "full.json").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.json", "resumed.json"]  # no temp


def test_detections_from_coco_round_trip(tmp_path):
    d = make_detections(3)
    w = CocoWriter(CLASSES)
    w.add({"file_name": "x.jpg", "id": 7, "source": "cam1"}, d)
    path = w.write(tmp_path / "c.json", indent=1)
    coco = load_coco(path)
    assert coco["images"][0] == {
        "id": 7,
        "file_name": "x.jpg",
        "height": 40,
        "width": 50,
        "source": "cam1",
    }
    back = detections_from_coco(path, "x.jpg")
    np.testing.assert_array_equal(back.masks, d.masks)
    np.testing.assert_array_equal(back.class_id, d.class_id)
    np.testing.assert_allclose(back.scores, d.scores, atol=1e-6)
    np.testing.assert_array_equal(back.data["needs_review"], d.data["needs_review"])
    from grounded_sam.masks import masks_to_xyxy

    np.testing.assert_allclose(back.xyxy, masks_to_xyxy(d.masks))


def test_errors_say_what_to_do():
    w = CocoWriter(CLASSES)
    d = make_detections(4)
    with pytest.raises(ValueError, match="segment step"):
        w.add("a.jpg", d.replace(masks=None))
    w.add("a.jpg", d)
    with pytest.raises(ValueError, match="already added"):
        w.add("a.jpg", d)
    with pytest.raises(ValueError, match="out of range"):
        CocoWriter(["cat"]).add("b.jpg", d)
    with pytest.raises(ValueError, match="disagrees"):
        w.add({"file_name": "c.jpg", "height": 10}, d)
    with pytest.raises(ValueError, match="unique"):
        CocoWriter(["cat", "cat"])
    with pytest.raises(ValueError, match="images"):
        load_coco({"annotations": []})


def test_masks_encoded_upstream_are_written_without_decoding():
    """RLEs from Detections.to_dict (the auto-label state file) give the same file as masks."""
    d = make_detections(3)
    masks = d.masks.copy()
    masks[2] = False  # an empty mask is dropped either way
    d = d.replace(masks=masks, class_id=np.array([0, -1, 1, 2]))
    payload = d.to_dict()
    rles = [item["mask"] for item in payload["detections"]]
    from_masks, from_rles = CocoWriter(CLASSES), CocoWriter(CLASSES)
    from_masks.add("a.jpg", d)
    from_rles.add("a.jpg", Detections.from_dict(payload, masks=False), rles=rles)
    assert json.dumps(from_rles.to_dict()) == json.dumps(from_masks.to_dict())
    with pytest.raises(ValueError, match="3 rles for 4 detections"):
        CocoWriter(CLASSES).add("b.jpg", d, rles=rles[:3])
