"""Box conversions, clipping, areas, IoU and NMS."""

from __future__ import annotations

import numpy as np
import pytest

from grounded_sam.geometry import (
    box_area,
    box_iou,
    clip_xyxy,
    cxcywh_norm_to_xyxy,
    nms,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def random_xyxy(rng: np.random.Generator, n: int, size: float = 100.0) -> np.ndarray:
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(0.5, size / 3, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


# ---------------------------------------------------------------------- conversions

XYXY_XYWH = [
    ([0, 0, 1, 1], [0, 0, 1, 1]),
    ([3, 4, 10, 6], [3, 4, 7, 2]),
    ([2.5, 1.25, 2.5, 8], [2.5, 1.25, 0, 6.75]),  # zero width
]


@pytest.mark.parametrize(("xyxy", "xywh"), XYXY_XYWH)
def test_xyxy_xywh_table(xyxy, xywh):
    np.testing.assert_array_equal(xyxy_to_xywh([xyxy]), [xywh])
    np.testing.assert_array_equal(xywh_to_xyxy([xywh]), [xyxy])


def test_conversions_round_trip(rng):
    boxes = random_xyxy(rng, 50)
    out = xywh_to_xyxy(xyxy_to_xywh(boxes))
    assert out.dtype == np.float32 and out.shape == (50, 4)
    np.testing.assert_allclose(out, boxes, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("cxcywh", "xyxy"),
    [
        # image H=480, W=640: x scales by 640, y by 480
        ([0.5, 0.5, 0.5, 0.25], [160, 180, 480, 300]),
        ([0.1, 0.9, 0.2, 0.2], [0, 384, 128, 480]),
        ([0.5, 0.5, 1.0, 1.0], [0, 0, 640, 480]),
        ([0.25, 0.75, 0.0, 0.0], [160, 360, 160, 360]),
    ],
)
def test_cxcywh_norm_to_xyxy_non_square(cxcywh, xyxy):
    out = cxcywh_norm_to_xyxy(np.array([cxcywh]), (480, 640))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [xyxy], rtol=0, atol=1e-4)


def test_cxcywh_norm_round_trip_non_square(rng):
    h, w = 300, 700
    boxes = random_xyxy(rng, 40, size=250)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 / w
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 / h
    bw = (boxes[:, 2] - boxes[:, 0]) / w
    bh = (boxes[:, 3] - boxes[:, 1]) / h
    out = cxcywh_norm_to_xyxy(np.stack([cx, cy, bw, bh], axis=1), (h, w))
    np.testing.assert_allclose(out, boxes, rtol=0, atol=1e-3)


@pytest.mark.parametrize(
    "func",
    [xyxy_to_xywh, xywh_to_xyxy, box_area, lambda b: cxcywh_norm_to_xyxy(b, (5, 5))],
)
def test_empty_and_bad_shapes(func):
    assert func(np.zeros((0, 4))).shape[0] == 0
    assert func([]).shape[0] == 0
    with pytest.raises(ValueError, match=r"\(N, 4\).*\(3, 3\)"):
        func(np.zeros((3, 3)))


# ---------------------------------------------------------------------- clip and area


@pytest.mark.parametrize(
    ("box", "clipped"),
    [
        ([-5, -5, 5, 5], [0, 0, 5, 5]),
        ([10, 20, 700, 500], [10, 20, 640, 480]),  # x clipped to W=640, y to H=480
        ([-10, 470, 650, 490], [0, 470, 640, 480]),
        ([700, 500, 800, 600], [640, 480, 640, 480]),  # entirely outside: collapses
        ([1.5, 2.5, 3.5, 4.5], [1.5, 2.5, 3.5, 4.5]),
    ],
)
def test_clip_xyxy(box, clipped):
    out = clip_xyxy([box], (480, 640))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [clipped])


def test_box_area():
    boxes = [[0, 0, 2, 3], [1, 1, 1, 5], [5, 5, 4, 4], [0.5, 0, 1, 0.5]]
    np.testing.assert_array_equal(box_area(boxes), np.array([6, 0, 0, 0.25], np.float32))


# ---------------------------------------------------------------------- IoU

A = [0, 0, 2, 2]
IOU_TABLE = [
    (A, A, 1.0),
    (A, [1, 1, 3, 3], 1 / 7),  # overlap 1, union 4 + 4 - 1
    (A, [2, 0, 4, 2], 0.0),  # touching edges
    (A, [0, 0, 1, 1], 1 / 4),  # contained
    (A, [0, 0, 4, 1], 1 / 3),  # overlap 2, union 4 + 4 - 2
    (A, [10, 10, 12, 12], 0.0),  # disjoint
    (A, [1, 1, 1, 1], 0.0),  # empty box inside
    ([1, 1, 1, 1], [1, 1, 1, 1], 0.0),  # both empty: 0, not NaN
    ([0, 0, 3, 1], [1, 0, 2, 3], 1 / 5),  # a cross: overlap 1, union 3 + 3 - 1
]


@pytest.mark.parametrize(("a", "b", "iou"), IOU_TABLE)
def test_box_iou_table(a, b, iou):
    np.testing.assert_allclose(box_iou([a], [b]), [[iou]], rtol=1e-6)
    np.testing.assert_allclose(box_iou([b], [a]), [[iou]], rtol=1e-6)  # symmetric


def test_box_iou_matrix():
    a = np.array([row[0] for row in IOU_TABLE], np.float32)
    b = np.array([row[1] for row in IOU_TABLE], np.float32)
    m = box_iou(a, b)
    assert m.shape == (len(a), len(b)) and m.dtype == np.float32
    np.testing.assert_allclose(np.diag(m), [row[2] for row in IOU_TABLE], rtol=1e-6)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, len(b))
    assert box_iou(a, np.zeros((0, 4))).shape == (len(a), 0)


# ---------------------------------------------------------------------- NMS


def greedy_nms(boxes, scores, thr, groups=None):
    """Reference: visit by score, keep a box unless a kept box of its group overlaps > thr."""
    groups = np.zeros(len(boxes), int) if groups is None else np.asarray(groups)
    iou = box_iou(boxes, boxes)
    kept: list[int] = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        if all(groups[j] != groups[i] or iou[i, j] <= thr for j in kept):
            kept.append(int(i))
    return kept


#            x1  y1  x2  y2   score class
NMS_BOXES = np.array(
    [
        [0, 0, 10, 10],  # 0: 0.9, class 0
        [1, 1, 11, 11],  # 1: 0.8, class 1; IoU with 0 = 81 / 119 = 0.68
        [0, 0, 10, 9],  # 2: 0.7, class 0; IoU with 0 = 90 / 100 = 0.9
        [50, 50, 60, 60],  # 3: 0.6, class 1; alone
        [1, 1, 11, 10],  # 4: 0.95, class 1; IoU with 1 = 0.9
    ],
    np.float32,
)
NMS_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.95], np.float32)
NMS_CLASSES = np.array([0, 1, 0, 1, 1])


@pytest.mark.parametrize(
    ("thr", "groups", "expected"),
    [
        (0.5, None, [4, 3]),  # agnostic: 4 suppresses 0, 1, 2
        (0.5, NMS_CLASSES, [4, 0, 3]),  # per class: 0 survives 4 (other class), kills 2
        (0.85, NMS_CLASSES, [4, 0, 3]),  # 0.9 overlaps are above 0.85
        (0.95, NMS_CLASSES, [4, 0, 1, 2, 3]),  # nothing overlaps more than 0.95
        # 4 removes 0 (IoU 81 / 109 = 0.74) and 1 (0.9); 2 overlaps 4 by 72 / 108 = 0.67 only,
        # and 0, which overlapped it by 0.9, is already gone
        (0.7, None, [4, 2, 3]),
        (0.75, None, [4, 0, 3]),  # 4-0 = 0.743 <= 0.75 so 0 stays; it removes 2
    ],
)
def test_nms_table(thr, groups, expected):
    keep = nms(NMS_BOXES, NMS_SCORES, thr, groups)
    assert keep.dtype == np.int64
    assert keep.tolist() == expected
    assert keep.tolist() == greedy_nms(NMS_BOXES, NMS_SCORES, thr, groups)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("per_class", [False, True])
def test_nms_matches_greedy_reference(seed, per_class):
    rng = np.random.default_rng(seed)
    boxes = random_xyxy(rng, 60, size=60)
    scores = rng.permutation(60).astype(np.float32) / 60  # distinct scores
    groups = rng.integers(0, 3, 60) if per_class else None
    keep = nms(boxes, scores, 0.4, groups)
    assert keep.tolist() == greedy_nms(boxes, scores, 0.4, groups)
    assert np.all(np.diff(scores[keep]) <= 0)  # best score first


def test_nms_edge_cases():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).dtype == np.int64
    with pytest.raises(ValueError, match="iou_threshold"):
        nms(NMS_BOXES, NMS_SCORES, 1.5)
    with pytest.raises(ValueError, match=r"scores must have shape \(5,\)"):
        nms(NMS_BOXES, NMS_SCORES[:3], 0.5)
    with pytest.raises(ValueError, match=r"groups must have shape \(5,\)"):
        nms(NMS_BOXES, NMS_SCORES, 0.5, groups=[0, 1])
