"""Detections: construction, coercion, validation, slicing, concatenation, serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grounded_sam.types import Detections

H, W = 12, 16


def make(n: int = 4, *, masks: bool = True, data: bool = True, seed: int = 0) -> Detections:
    """n valid detections on an H x W image with every optional field filled."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 8, size=(n, 2))
    wh = rng.uniform(1, 8, size=(n, 2))
    return Detections(
        xyxy=np.concatenate([xy, xy + wh], axis=1),
        scores=rng.uniform(0, 1, n),
        phrases=[f"p{i}" for i in range(n)],
        class_id=np.arange(n) % 3 - 1,
        masks=rng.uniform(size=(n, H, W)) > 0.5 if masks else None,
        mask_scores=rng.uniform(0, 1, n) if masks else None,
        image_size=(H, W),
        data=(
            {
                "stability": rng.uniform(0, 1, n).astype(np.float32),
                "needs_review": np.arange(n) % 2 == 0,
                "class_name": [f"c{i}" for i in range(n)],
            }
            if data
            else {}
        ),
    )


def assert_same(a: Detections, b: Detections) -> None:
    """Field-by-field equality, including dtypes."""
    assert len(a) == len(b)
    assert a.image_size == b.image_size
    for name in ("xyxy", "scores", "class_id", "masks", "mask_scores"):
        x, y = getattr(a, name), getattr(b, name)
        if x is None or y is None:
            assert x is None and y is None, name
        else:
            assert x.dtype == y.dtype, name
            np.testing.assert_array_equal(x, y, err_msg=name)
    assert a.phrases == b.phrases
    assert set(a.data) == set(b.data)
    for k in a.data:
        x, y = a.data[k], b.data[k]
        assert type(x) is type(y), k
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape, k
            np.testing.assert_array_equal(x, y, err_msg=k)
        else:
            assert x == y, k


# ---------------------------------------------------------------------- construction


def test_construction_coerces_dtypes():
    d = Detections(
        xyxy=[[0, 0, 2, 3], [1, 1, 4, 4]],  # ints in a list
        scores=np.array([0.5, 1.0], np.float64),
        phrases=("cat", 7),  # tuple, non-str
        class_id=np.array([0.0, -1.0]),  # integral floats
        masks=np.zeros((2, 5, 6), bool),
        mask_scores=[0.1, 0.2],
        image_size=np.array([5, 6]),
    )
    assert d.xyxy.dtype == np.float32 and d.xyxy.shape == (2, 4)
    assert d.scores.dtype == np.float32
    assert d.class_id.dtype == np.int64 and d.class_id.tolist() == [0, -1]
    assert d.mask_scores.dtype == np.float32
    assert d.phrases == ["cat", "7"]
    assert d.image_size == (5, 6) and all(type(v) is int for v in d.image_size)
    assert len(d) == 2


@pytest.mark.parametrize(
    "xyxy", [[], np.zeros((0, 4)), np.zeros(0, np.float64)], ids=["list", "(0,4)", "(0,)"]
)
def test_zero_detections_from_empty_inputs(xyxy):
    d = Detections(xyxy=xyxy, scores=[], phrases=[], class_id=[], image_size=(H, W))
    assert len(d) == 0
    assert d.xyxy.shape == (0, 4) and d.class_id.dtype == np.int64


def test_instances_are_frozen():
    d = make(2)
    with pytest.raises(AttributeError):
        d.scores = np.zeros(2)


# name -> (overrides to a valid 2-detection construction, substrings the message must contain)
VALID = dict(
    xyxy=np.array([[0, 0, 2, 2], [1, 1, 3, 3]], np.float32),
    scores=[0.5, 0.6],
    phrases=["a", "b"],
    class_id=[0, 1],
    masks=np.zeros((2, 4, 5), bool),
    mask_scores=[0.1, 0.2],
    image_size=(4, 5),
)
INVALID = {
    "xyxy 3 columns": ({"xyxy": np.zeros((2, 3))}, ["xyxy", "(N, 4)", "(2, 3)"]),
    "xyxy 3-d": ({"xyxy": np.zeros((2, 4, 1))}, ["xyxy", "(N, 4)", "(2, 4, 1)"]),
    "xyxy NaN": ({"xyxy": [[0, 0, np.nan, 2], [1, 1, 3, 3]]}, ["xyxy", "finite"]),
    "xyxy inverted": ({"xyxy": [[0, 0, 2, 2], [3, 1, 1, 3]]}, ["x1 <= x2", "[1]", "xywh"]),
    "scores length": ({"scores": [0.5]}, ["scores", "(2,)", "(1,)"]),
    "phrases length": ({"phrases": ["a"]}, ["phrases", "2 strings", "1"]),
    "class_id None": ({"class_id": None}, ["class_id", "-1"]),
    "class_id length": ({"class_id": [0, 1, 2]}, ["class_id", "(2,)", "(3,)"]),
    "class_id fractional": ({"class_id": [0.5, 1.0]}, ["class_id", "integers", "float64"]),
    "class_id with None": ({"class_id": [0, None]}, ["class_id", "integers", "object"]),
    "class_id strings": ({"class_id": ["cat", "dog"]}, ["class_id", "integers"]),
    "class_id below -1": ({"class_id": [0, -2]}, ["class_id", ">= -1"]),
    "masks dtype": ({"masks": np.zeros((2, 4, 5), np.uint8)}, ["masks", "bool", "uint8"]),
    "masks shape": ({"masks": np.zeros((2, 5, 4), bool)}, ["masks", "(2, 4, 5)", "(2, 5, 4)"]),
    "masks count": ({"masks": np.zeros((3, 4, 5), bool)}, ["masks", "(2, 4, 5)", "(3, 4, 5)"]),
    "mask_scores length": ({"mask_scores": [0.1]}, ["mask_scores", "(2,)", "(1,)"]),
    "image_size negative": ({"image_size": (-1, 5), "masks": None}, ["image_size", "(-1, 5)"]),
    "image_size 3 values": ({"image_size": (4, 5, 3)}, ["image_size", "(H, W)", "(4, 5, 3)"]),
    "data length": ({"data": {"s": np.zeros(3)}}, ["data['s']", "length 2", "3"]),
    "data list length": ({"data": {"s": ["x"]}}, ["data['s']", "length 2", "1"]),
    "data string": ({"data": {"s": "ab"}}, ["data['s']", "string"]),
    "data 0-d array": ({"data": {"s": np.array(1.0)}}, ["data['s']", "0-d"]),
    "data scalar": ({"data": {"s": 3}}, ["data['s']", "int"]),
}


@pytest.mark.parametrize("case", INVALID)
def test_validation_errors_give_expected_and_actual(case):
    overrides, parts = INVALID[case]
    with pytest.raises(ValueError) as info:
        Detections(**{**VALID, **overrides})
    msg = str(info.value)
    for part in parts:
        assert part in msg, (case, part, msg)


def test_valid_reference_case_constructs():
    assert len(Detections(**VALID)) == 2


# ---------------------------------------------------------------------- slicing


def _expected_take(d: Detections, idx: np.ndarray) -> Detections:
    """What d[idx] must contain, built field by field from d's arrays."""
    return Detections(
        xyxy=d.xyxy[idx],
        scores=d.scores[idx],
        phrases=[d.phrases[i] for i in idx],
        class_id=d.class_id[idx],
        masks=d.masks[idx],
        mask_scores=d.mask_scores[idx],
        image_size=d.image_size,
        data={
            "stability": d.data["stability"][idx],
            "needs_review": d.data["needs_review"][idx],
            "class_name": [d.data["class_name"][i] for i in idx],
        },
    )


N = 6
INDEXES = {
    "int": (2, [2]),
    "negative int": (-1, [5]),
    "numpy int": (np.int64(3), [3]),
    "slice": (slice(1, 4), [1, 2, 3]),
    "slice step": (slice(None, None, -2), [5, 3, 1]),
    "empty slice": (slice(3, 3), []),
    "bool array": (np.array([True, False, True, False, False, True]), [0, 2, 5]),
    "all-false bool": (np.zeros(N, bool), []),
    "index array": (np.array([4, 0, 4]), [4, 0, 4]),
    "index list": ([5, 1], [5, 1]),
    "negative index array": (np.array([-1, -6]), [5, 0]),
    "empty list": ([], []),
    "empty int array": (np.array([], np.int64), []),
}


@pytest.mark.parametrize("case", INDEXES)
def test_slicing(case):
    d = make(N)
    index, expected_rows = INDEXES[case]
    out = d[index]
    assert isinstance(out, Detections)
    assert_same(out, _expected_take(d, np.array(expected_rows, dtype=np.int64)))
    assert out.masks.shape == (len(expected_rows), H, W)


def test_score_filter_and_iteration():
    d = make(N)
    kept = d[d.scores > 0.5]
    assert np.all(kept.scores > 0.5)
    assert len(kept) == int((d.scores > 0.5).sum())
    rows = list(d)
    assert len(rows) == N and all(len(r) == 1 for r in rows)
    assert [r.phrases[0] for r in rows] == d.phrases


BAD_INDEXES = {
    "int too large": (6, "out of range"),
    "int too small": (-7, "out of range"),
    "index array out of range": (np.array([0, 6]), "out of range"),
    "bool wrong length": (np.array([True, False]), "shape (6,)"),
    "float array": (np.array([0.0, 1.0]), "float64"),
    "bool scalar": (True, "bool scalar"),
}


@pytest.mark.parametrize("case", BAD_INDEXES)
def test_bad_indexes(case):
    index, part = BAD_INDEXES[case]
    with pytest.raises(IndexError, match=part.replace("(", r"\(").replace(")", r"\)")):
        make(N)[index]


def test_slicing_without_optional_fields():
    d = make(3, masks=False, data=False)
    out = d[[2, 0]]
    assert out.masks is None and out.mask_scores is None and out.data == {}
    np.testing.assert_array_equal(out.xyxy, d.xyxy[[2, 0]])


# ---------------------------------------------------------------------- empty / concat / replace


@pytest.mark.parametrize("with_masks", [False, True])
def test_empty(with_masks):
    d = Detections.empty((H, W), with_masks=with_masks)
    assert len(d) == 0 and d.image_size == (H, W)
    assert d.xyxy.shape == (0, 4) and d.xyxy.dtype == np.float32
    assert d.scores.dtype == np.float32 and d.class_id.dtype == np.int64
    assert d.phrases == []
    if with_masks:
        assert d.masks.shape == (0, H, W) and d.masks.dtype == bool
        assert d.mask_scores.shape == (0,)
    else:
        assert d.masks is None and d.mask_scores is None


def test_concatenate_joins_every_field():
    a, b = make(3, seed=1), make(2, seed=2)
    c = Detections.concatenate([a, b])
    assert len(c) == 5
    assert_same(c[:3], a)
    assert_same(c[3:], b)
    assert isinstance(c.data["class_name"], list)
    assert c.data["stability"].dtype == np.float32


def test_concatenate_with_empty_items():
    a = make(3, seed=1)
    # empty parts (even without masks or data) join anything
    c = Detections.concatenate([Detections.empty((H, W)), a, Detections.empty((H, W))])
    assert_same(c, a)
    both_empty = Detections.concatenate(
        [Detections.empty((H, W)), Detections.empty((H, W), with_masks=True)]
    )
    assert len(both_empty) == 0 and both_empty.masks is None
    masked = Detections.concatenate([Detections.empty((H, W), with_masks=True)] * 2)
    assert len(masked) == 0 and masked.masks.shape == (0, H, W)


CONCAT_ERRORS = {
    "nothing": (lambda: [], "at least one"),
    "different images": (
        lambda: [make(2), make(2).replace(image_size=(H + 1, W), masks=None)],
        "different images",
    ),
    "masks in some": (lambda: [make(2), make(2).replace(masks=None)], "masks"),
    "mask_scores in some": (lambda: [make(2), make(2).replace(mask_scores=None)], "mask_scores"),
    "data keys differ": (lambda: [make(2), make(2).replace(data={})], "data keys differ"),
}


@pytest.mark.parametrize("case", CONCAT_ERRORS)
def test_concatenate_errors(case):
    build, part = CONCAT_ERRORS[case]
    with pytest.raises(ValueError, match=part):
        Detections.concatenate(build())


def test_replace_validates_and_copies():
    d = make(3)
    r = d.replace(class_id=[-1, -1, -1], phrases=["x", "y", "z"])
    assert r.class_id.tolist() == [-1, -1, -1] and r.phrases == ["x", "y", "z"]
    assert d.phrases == ["p0", "p1", "p2"]  # the original is untouched
    np.testing.assert_array_equal(r.xyxy, d.xyxy)
    with pytest.raises(ValueError, match="scores"):
        d.replace(scores=[0.1])
    with pytest.raises(TypeError, match="confidence"):
        d.replace(confidence=[0.1, 0.2, 0.3])


def test_repr_is_short():
    text = repr(make(7))
    assert "n=7" in text and f"bool(7, {H}, {W})" in text and "…" in text


# ---------------------------------------------------------------------- serialisation


def _holes_and_parts(h: int = 20, w: int = 23) -> np.ndarray:
    """Three masks: a ring (a hole), two separate blobs, a full-image mask."""
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot(yy - 10, xx - 11)
    ring = (r < 8) & (r > 3)
    parts = ((yy < 5) & (xx < 5)) | ((yy > 14) & (xx > 17)) | ((yy == 10) & (xx == 0))
    full = np.ones((h, w), bool)
    return np.stack([ring, parts, full])


def test_to_dict_is_json_and_from_dict_inverts_it():
    masks = _holes_and_parts()
    d = Detections(
        xyxy=[[3.3, 2.0, 19.1, 18.7], [0, 0, 23, 20], [0.1, 0.2, 23, 20]],
        scores=np.array([0.123456789, 1.0, 1e-8]),
        phrases=["ring", "two blobs", "everything ✓"],
        class_id=[0, -1, 2],
        masks=masks,
        mask_scores=[0.9, 0.8, 1 / 3],
        image_size=masks.shape[1:],
        data={
            "stability": np.array([0.1, 0.2, 1 / 3], np.float32),
            "needs_review": np.array([True, False, True]),
            "area": np.array([1, 2, 3], np.int32),
            "embedding": np.arange(6, dtype=np.float64).reshape(3, 2) / 7,
            "class_name": ["cat", "dog", None],
        },
    )
    text = json.dumps(d.to_dict())
    back = Detections.from_dict(json.loads(text))
    assert_same(back, d)
    # masks are COCO compressed RLE strings
    first = json.loads(text)["detections"][0]
    assert isinstance(first["mask"]["counts"], str) and first["mask"]["size"] == [20, 23]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Detections.empty((H, W)),
        lambda: Detections.empty((H, W), with_masks=True),
        lambda: make(4)[[]],
        lambda: make(3, masks=False),
        lambda: make(3, data=False),
    ],
    ids=["empty", "empty-with-masks", "empty-with-data", "no-masks", "no-data"],
)
def test_round_trip_of_edge_cases(build):
    d = build()
    assert_same(Detections.from_dict(json.loads(json.dumps(d.to_dict()))), d)


def test_from_dict_reads_output_without_fields():
    d = make(3)
    legacy = d.to_dict()
    del legacy["fields"]
    back = Detections.from_dict(legacy)
    np.testing.assert_array_equal(back.masks, d.masks)
    np.testing.assert_array_equal(back.data["needs_review"], d.data["needs_review"])
    assert back.data["class_name"] == d.data["class_name"]
    assert len(Detections.from_dict({"image_size": [H, W], "detections": []})) == 0


def test_top_k_and_with_nms():
    d = Detections(
        xyxy=[[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]],
        scores=[0.5, 0.9, 0.7, 0.5],
        phrases=["a", "b", "c", "d"],
        class_id=[0, 0, 1, 0],
        image_size=(64, 64),
    )
    assert d.top_k(2).phrases == ["b", "c"]
    assert d.top_k(None).phrases == ["b", "c", "a", "d"]  # equal scores keep their order
    assert d.top_k(10).phrases == ["b", "c", "a", "d"]
    # per class: "b" suppresses "a" (same class, IoU 0.68), not "c" (another class)
    assert d.with_nms(0.5).phrases == ["b", "c", "d"]
    assert d.with_nms(0.5, class_agnostic=True).phrases == ["b", "d"]
    assert len(Detections.empty((4, 4)).with_nms(0.5).top_k(3)) == 0
