"""Overlays: masks are tinted with the detection's colour, boxes land on their pixel edges,
labels are drawn inside the image, the input is never modified."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from grounded_sam import viz
from grounded_sam.types import Detections

H, W = 60, 80


def _dets(review: bool = False, with_masks: bool = True) -> Detections:
    masks = np.zeros((2, H, W), bool)
    masks[0, 10:30, 10:40] = True  # large
    masks[1, 15:20, 20:25] = True  # small, inside the large one
    data = {"needs_review": np.array([False, review])}
    return Detections(
        xyxy=np.array([[10, 10, 40, 30], [20, 15, 25, 20]], np.float32),
        scores=np.array([0.9, 0.4], np.float32),
        phrases=["cat", "dog"],
        class_id=np.array([0, 1]),
        masks=masks if with_masks else None,
        mask_scores=np.array([0.95, 0.5], np.float32) if with_masks else None,
        image_size=(H, W),
        data=data,
    )


@pytest.fixture
def gray() -> np.ndarray:
    return np.full((H, W, 3), 100, np.uint8)


def test_mask_annotator_blends_colour_inside_masks_only(gray):
    dets = _dets()
    out = viz.MaskAnnotator(alpha=0.5, outline=False).annotate(gray, dets)
    assert out.dtype == np.uint8 and out.shape == (H, W, 3)
    c0 = np.array(viz.color_of(0), np.float32)
    c1 = np.array(viz.color_of(1), np.float32)
    expected0 = np.rint(100 * 0.5 + c0 * 0.5)
    # a pixel of the large mask only
    np.testing.assert_array_equal(out[12, 12], expected0)
    # the small mask is drawn last (on top of the large one)
    expected1 = np.rint((100 * 0.5 + c0 * 0.5) * 0.5 + c1 * 0.5)
    np.testing.assert_allclose(out[17, 22], expected1, atol=1)
    # outside every mask: untouched
    np.testing.assert_array_equal(out[50, 70], [100, 100, 100])
    np.testing.assert_array_equal(gray, 100)  # input not modified


def test_mask_outline_is_the_mask_border(gray):
    dets = _dets()[0]
    out = viz.MaskAnnotator(alpha=0.0, outline=True).annotate(gray, dets)
    color = viz.color_of(0)
    np.testing.assert_array_equal(out[10, 20], color)  # top edge of the mask
    np.testing.assert_array_equal(out[29, 39], color)  # bottom-right corner
    np.testing.assert_array_equal(out[20, 25], [100, 100, 100])  # interior, alpha 0
    np.testing.assert_array_equal(out[9, 20], [100, 100, 100])  # just outside


def test_box_annotator_draws_on_pixel_edges(gray):
    dets = _dets(with_masks=False)[0]
    out = viz.BoxAnnotator(thickness=1).annotate(gray, dets)
    color = viz.color_of(0)
    # box (10, 10, 40, 30): columns 10..39 and rows 10..29 are inside
    np.testing.assert_array_equal(out[10, 25], color)
    np.testing.assert_array_equal(out[29, 25], color)
    np.testing.assert_array_equal(out[20, 10], color)
    np.testing.assert_array_equal(out[20, 39], color)
    np.testing.assert_array_equal(out[20, 40], [100, 100, 100])
    np.testing.assert_array_equal(out[20, 25], [100, 100, 100])


def test_review_boxes_are_dashed(gray):
    dets = _dets(review=True, with_masks=False)
    big = Detections(
        xyxy=np.array([[5, 5, 75, 55]], np.float32),
        scores=np.array([0.3], np.float32),
        phrases=["cat"],
        class_id=np.array([0]),
        image_size=(H, W),
        data={"needs_review": np.array([True])},
    )
    out = viz.BoxAnnotator(thickness=1).annotate(gray, big)
    top = (out[5, 5:75] != 100).any(axis=1)
    assert 0 < top.mean() < 0.9  # gaps: dashed
    solid = viz.BoxAnnotator(thickness=1).annotate(gray, big.replace(data={}))
    assert (solid[5, 5:75] != 100).any(axis=1).all()
    assert viz.detection_labels(dets) == ["cat 0.90", "dog 0.40 ?"]


def test_labels_prefer_class_names_and_stay_inside_the_image(gray):
    dets = _dets(with_masks=False).replace(data={"class_name": ["tabby", ""]})
    assert viz.detection_labels(dets) == ["tabby 0.90", "dog 0.40"]
    # a box at the very top: the label goes inside it, not off the image
    top = Detections(
        xyxy=np.array([[0, 0, 30, 20]], np.float32),
        scores=[0.5],
        phrases=["cat"],
        class_id=[0],
        image_size=(H, W),
    )
    out = viz.LabelAnnotator(font_size=11).annotate(gray, top)
    changed = (out != 100).any(axis=2)
    assert changed[:5, :10].any()  # drawn at the top-left corner
    assert not changed[30:, :].any()  # and nowhere far from it


def test_label_count_mismatch_is_an_error(gray):
    with pytest.raises(ValueError, match="2 detections"):
        viz.LabelAnnotator().annotate(gray, _dets(), labels=["one"])


def test_annotate_composes_and_accepts_pil(gray):
    dets = _dets()
    out = viz.annotate(Image.fromarray(gray), dets)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert out.flags.writeable
    assert (out != 100).any(axis=2)[10:30, 10:40].mean() > 0.9
    only_boxes = viz.annotate(gray, dets, masks=False, labels=False)
    assert (only_boxes != 100).any(axis=2).sum() < (out != 100).any(axis=2).sum()


def test_empty_detections_and_wrong_size(gray):
    empty = Detections.empty((H, W), with_masks=True)
    np.testing.assert_array_equal(viz.annotate(gray, empty), gray)
    with pytest.raises(ValueError, match="size"):
        viz.annotate(np.zeros((10, 10, 3), np.uint8), _dets())


@pytest.mark.parametrize(
    "image, shape",
    [
        (np.zeros((4, 5), np.uint8), (4, 5, 3)),
        (np.zeros((4, 5, 4), np.uint8), (4, 5, 3)),
        (np.ones((4, 5, 3), np.float32), (4, 5, 3)),
    ],
)
def test_as_rgb(image, shape):
    out = viz.as_rgb(image)
    assert out.shape == shape and out.dtype == np.uint8
    if image.dtype == np.float32:
        assert (out == 255).all()


def test_point_annotator_colours(gray):
    out = viz.PointAnnotator(radius=3).annotate(gray, [[10, 10], [50, 40]], [1, 0])
    np.testing.assert_array_equal(out[10, 10], (40, 200, 60))
    np.testing.assert_array_equal(out[40, 50], (220, 40, 40))


def test_colour_keys_by_class_then_phrase_then_index():
    d = Detections(
        xyxy=np.zeros((4, 4), np.float32),
        scores=np.zeros(4),
        phrases=["", "", "cat", "cat"],
        class_id=[3, -1, -1, -1],
        image_size=(H, W),
    )
    keys = [viz.color_key(d, i) for i in range(4)]
    assert keys[0] == 3 and keys[1] == 1 and keys[2] == keys[3]
