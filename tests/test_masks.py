"""COCO RLE, boxes and areas from masks, checked against pycocotools."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from grounded_sam.masks import (
    mask_area,
    mask_to_rle,
    masks_to_xyxy,
    rle_area,
    rle_to_mask,
    rles_to_xyxy,
)

# pycocotools' own decode trips numpy 2's copy-keyword deprecation; not ours to fix
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def _random(shape, p, seed):
    return np.random.default_rng(seed).uniform(size=shape) < p


def _blobs(h, w):
    yy, xx = np.mgrid[:h, :w]
    ring = (np.hypot(yy - h / 2, xx - w / 2) < min(h, w) / 2.5) & (
        np.hypot(yy - h / 2, xx - w / 2) > min(h, w) / 6
    )
    return ring | ((yy < 3) & (xx > w - 4))


def _single(h, w, y, x):
    m = np.zeros((h, w), bool)
    m[y, x] = True
    return m


MASKS = {
    "random 7x13 sparse": _random((7, 13), 0.1, 1),
    "random 31x17 half": _random((31, 17), 0.5, 2),
    "random 1x1 on": np.ones((1, 1), bool),
    "random 1x1 off": np.zeros((1, 1), bool),
    "random 64x3 dense": _random((64, 3), 0.95, 3),
    "random 3x64": _random((3, 64), 0.3, 4),
    "random 101x97": _random((101, 97), 0.5, 5),
    "all zero 9x11": np.zeros((9, 11), bool),
    "all one 9x11": np.ones((9, 11), bool),
    "single pixel first": _single(9, 11, 0, 0),
    "single pixel last": _single(9, 11, 8, 10),
    "single pixel middle": _single(9, 11, 4, 5),
    "ring with blob 40x57": _blobs(40, 57),
    "one row": np.eye(1, 23, 5, dtype=bool),
    "one column": np.eye(23, 1, -5, dtype=bool),
    # long runs exercise the multi-character counts and the differences of the compression
    "long runs 300x301": np.tile(np.arange(301) % 150 < 120, (300, 1)),
    # objects touching the ends of the range of columns that hold pixels
    "block at the top of middle columns": np.pad(np.ones((3, 2), bool), ((0, 6), (4, 5))),
    "block at the bottom of middle columns": np.pad(np.ones((3, 2), bool), ((6, 0), (4, 5))),
    "full middle columns": np.pad(np.ones((9, 2), bool), ((0, 0), (4, 5))),
}


def _coco_encode(mask: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


@pytest.mark.parametrize("name", MASKS)
def test_rle_round_trip(name):
    mask = MASKS[name]
    rle = mask_to_rle(mask)
    assert rle["size"] == list(mask.shape)
    assert isinstance(rle["counts"], str)
    back = rle_to_mask(rle)
    assert back.dtype == bool and back.shape == mask.shape
    np.testing.assert_array_equal(back, mask)


@pytest.mark.parametrize("name", MASKS)
def test_rle_matches_pycocotools(name):
    mask = MASKS[name]
    ours = mask_to_rle(mask)
    theirs = _coco_encode(mask)
    assert ours == theirs
    # pycocotools decodes our string (as str or bytes), and we decode its bytes
    decoded = coco_mask.decode({"size": ours["size"], "counts": ours["counts"].encode()})
    np.testing.assert_array_equal(decoded.astype(bool), mask)
    np.testing.assert_array_equal(
        rle_to_mask({"size": theirs["size"], "counts": theirs["counts"].encode()}), mask
    )


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's run lengths, written out the slow, obvious way: column-major, zeros first."""
    flat = mask.ravel(order="F")
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return [0, *counts] if flat[0] else counts


@pytest.mark.parametrize("name", MASKS)
def test_uncompressed_counts_are_decoded(name):
    mask = MASKS[name]
    h, w = mask.shape
    counts = _uncompressed_counts(mask)
    # pycocotools turns uncompressed counts (a list) into the compressed string we write
    compressed = coco_mask.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    assert compressed["counts"].decode() == mask_to_rle(mask)["counts"]
    np.testing.assert_array_equal(rle_to_mask({"size": [h, w], "counts": counts}), mask)


def _stack(names):
    shapes = {MASKS[n].shape for n in names}
    assert len(shapes) == 1
    return np.stack([MASKS[n] for n in names])


STACKS = {
    "9x11": ["all zero 9x11", "all one 9x11", "single pixel first", "single pixel last"],
    "single middle": ["single pixel middle"],
    "random": ["random 101x97"],
    "blobs": ["ring with blob 40x57"],
    "row": ["one row"],
    "column": ["one column"],
}


@pytest.mark.parametrize("name", STACKS)
def test_boxes_and_areas_match_pycocotools(name):
    masks = _stack(STACKS[name])
    rles = [coco_mask.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]
    xywh = coco_mask.toBbox(rles).reshape(-1, 4)
    expected_xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    boxes = masks_to_xyxy(masks)
    assert boxes.dtype == np.float32 and boxes.shape == (len(masks), 4)
    np.testing.assert_array_equal(boxes, expected_xyxy.astype(np.float32))
    areas = mask_area(masks)
    assert areas.dtype == np.int64
    np.testing.assert_array_equal(areas, coco_mask.area(rles).astype(np.int64))


def test_box_of_known_mask():
    m = np.zeros((1, 10, 10), bool)
    m[0, 2:5, 3:6] = True  # rows 2..4, columns 3..5
    np.testing.assert_array_equal(masks_to_xyxy(m), [[3, 2, 6, 5]])
    assert mask_area(m).tolist() == [9]


def test_zero_masks():
    empty = np.zeros((0, 5, 6), bool)
    assert masks_to_xyxy(empty).shape == (0, 4)
    assert mask_area(empty).shape == (0,)


def test_non_bool_masks_are_read_as_nonzero():
    m = np.array([[0, 255], [1, 0]], np.uint8)
    np.testing.assert_array_equal(rle_to_mask(mask_to_rle(m)), m > 0)


@pytest.mark.parametrize(
    ("func", "arg"),
    [
        (mask_to_rle, np.zeros((2, 3, 4), bool)),
        (masks_to_xyxy, np.zeros((3, 4), bool)),
        (mask_area, np.zeros((3, 4), bool)),
    ],
)
def test_wrong_ndim_is_refused(func, arg):
    with pytest.raises(ValueError, match="shape"):
        func(arg)


@pytest.mark.parametrize(
    ("rle", "part"),
    [
        ({"size": [2, 2]}, "'size' and 'counts'"),
        ({"counts": "0"}, "'size' and 'counts'"),
        ("not a dict", "'size' and 'counts'"),
        ({"size": [2, 2], "counts": [1, 2]}, "sum to 3"),
        ({"size": [3, 3], "counts": mask_to_rle(np.ones((2, 2), bool))["counts"]}, "3x3"),
        ({"size": [1, 2], "counts": [3, -1]}, "not be negative"),
        ({"size": [2, 2], "counts": "5"}, "sum to 5 but size 2x2"),
        ({"size": [2, 2], "counts": "1i"}, "not a COCO compressed RLE"),  # ends mid-value
        ({"size": [2, 2], "counts": "1 "}, "not a COCO compressed RLE"),  # below '0'
        ({"size": [2, 2], "counts": "o" * 14 + "0"}, "wider than 64 bits"),
    ],
)
def test_bad_rle(rle, part):
    with pytest.raises(ValueError, match=part):
        rle_to_mask(rle)


@pytest.mark.parametrize("seed", range(6))
def test_rle_of_noisy_and_huge_masks_matches_pycocotools(seed):
    """Many short runs, runs longer than 2**20 pixels, counts that shrink and grow (negative
    and positive differences): the vectorised codec writes and reads pycocotools' strings."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 400)), int(rng.integers(1, 400))
    noisy = rng.uniform(size=(h, w)) < rng.uniform(0.05, 0.95)
    huge = np.zeros((1200, 1100), bool)
    huge[int(rng.integers(0, 1200)) :, int(rng.integers(0, 1100)) :] = True
    for mask in (noisy, huge, ~huge):
        theirs = _coco_encode(mask)
        assert mask_to_rle(mask) == theirs
        np.testing.assert_array_equal(rle_to_mask(theirs), mask)
        np.testing.assert_array_equal(
            rle_to_mask(dict(theirs, counts=theirs["counts"].encode())), mask
        )


def _golden_names() -> list[str]:
    import json

    from _rle_cases import GOLDEN

    return list(json.loads(GOLDEN.read_text()))


@pytest.mark.parametrize("name", _golden_names())
def test_rle_strings_area_and_box_equal_the_golden_ones(name):
    """The strings the package's own codec wrote before pycocotools took over (see
    tests/_rle_cases.py): same counts, same area, same box, and the string decodes back."""
    import json

    from _rle_cases import GOLDEN, cases, digest

    expected = json.loads(GOLDEN.read_text())[name]
    mask = cases()[name]
    assert digest(mask) == expected["mask_sha256"], f"the recipe of {name!r} changed, not the codec"
    rle = mask_to_rle(mask)
    assert rle == {"size": expected["size"], "counts": expected["counts"]}
    assert isinstance(rle["counts"], str)
    assert int(mask_area(mask[None])[0]) == expected["area"]
    assert masks_to_xyxy(mask[None])[0].tolist() == expected["xyxy"]
    # read from the runs, as the COCO export does, for str and bytes counts
    for coded in (rle, dict(rle, counts=rle["counts"].encode())):
        assert rle_area([coded]).tolist() == [expected["area"]]
        assert rles_to_xyxy([coded]).tolist() == [expected["xyxy"]]
    np.testing.assert_array_equal(rle_to_mask(rle), mask)


def test_rle_area_and_boxes_of_several_and_of_none():
    masks = np.stack([MASKS["all zero 9x11"], MASKS["single pixel last"], MASKS["all one 9x11"]])
    rles = [mask_to_rle(m) for m in masks]
    assert rle_area(rles).dtype == np.int64
    np.testing.assert_array_equal(rle_area(rles), mask_area(masks))
    boxes = rles_to_xyxy(rles)
    assert boxes.dtype == np.float32 and boxes.shape == (3, 4)
    np.testing.assert_array_equal(boxes, masks_to_xyxy(masks))
    assert rle_area([]).shape == (0,) and rles_to_xyxy([]).shape == (0, 4)
    with pytest.raises(ValueError, match="compressed RLE"):
        rle_area([{"size": [1, 2], "counts": [1, 1]}])
    with pytest.raises(ValueError, match="'size' and 'counts'"):
        rles_to_xyxy([{"counts": "0"}])


def test_an_empty_array_has_no_runs():
    assert mask_to_rle(np.zeros((0, 5), bool)) == {"size": [0, 5], "counts": ""}
    assert rle_to_mask({"size": [0, 5], "counts": ""}).shape == (0, 5)
