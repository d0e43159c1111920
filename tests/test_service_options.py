"""Checks of a web request's options: numbers, thresholds, everything-mode options, clicks."""

from __future__ import annotations

import numpy as np
import pytest

from grounded_sam.errors import PromptError
from grounded_sam.service.limits import LimitExceeded, Limits
from grounded_sam.service.options import (
    check_amg_options,
    check_amg_work,
    check_clicks,
    check_prompt,
    integer,
    number,
    unit_interval,
)

LIMITS = Limits(max_points=3, max_classes=2, max_prompt_chars=20, max_points_per_side=8)


@pytest.mark.parametrize(
    "value, message",
    [
        (True, "must be a number, got True"),
        ("0.5", "must be a number, got '0.5'"),
        ([0.5], r"must be a number, got \[0.5\]"),
        (float("nan"), "must be a finite number, got nan"),
        (float("-inf"), "must be a finite number, got -inf"),
        (1.5, r"must be in \[0, 1\], got 1.5"),
        (-0.01, r"must be in \[0, 1\], got -0.01"),
    ],
)
def test_unit_interval_refusals(value, message):
    with pytest.raises(ValueError, match="box_threshold " + message):
        unit_interval("box_threshold", value)


def test_numbers_pass_through():
    assert unit_interval("t", None) is None
    assert unit_interval("t", np.float32(0.25)) == 0.25
    assert number("x", 7, low=0) == 7.0
    assert integer("n", 4.0, low=1) == 4 and isinstance(integer("n", np.int64(3)), int)
    with pytest.raises(ValueError, match="whole number"):
        integer("n", 2.5)


def test_amg_options():
    assert check_amg_options({"points_per_side": 8, "crop_n_layers": 1}, LIMITS) == {
        "points_per_side": 8,
        "crop_n_layers": 1,
    }
    with pytest.raises(LimitExceeded, match="points_per_side is 9"):
        check_amg_options({"points_per_side": 9}, LIMITS)
    with pytest.raises(LimitExceeded, match="crop_n_layers is 2"):
        check_amg_options({"crop_n_layers": 2}, LIMITS)
    with pytest.raises(ValueError, match=r"crop_overlap_ratio must be in \[0, 0.99\]"):
        check_amg_options({"crop_overlap_ratio": 1}, LIMITS)
    with pytest.raises(ValueError, match="JSON object"):
        check_amg_options([1], LIMITS)


def test_prompt_bounds():
    assert check_prompt("cat . dog", LIMITS) == ["cat", "dog"]
    with pytest.raises(LimitExceeded, match="number of classes is 3"):
        check_prompt("a . b . c", LIMITS)
    with pytest.raises(LimitExceeded, match="length is 21"):
        check_prompt("x" * 21, LIMITS)
    with pytest.raises(PromptError, match="names no class"):
        check_prompt(" ", LIMITS)
    with pytest.raises(ValueError, match="prompt must be text"):
        check_prompt(["cat"], LIMITS)


def test_clicks():
    pts, lab, box = check_clicks([[1, 2], (3.5, 4)], [1, 0], [0, 0, 10, 8], (8, 10), LIMITS)
    assert pts.dtype == np.float32 and pts.tolist() == [[1, 2], [3.5, 4]]
    assert lab.tolist() == [1, 0] and box.tolist() == [0, 0, 10, 8]
    assert check_clicks(None, None, [1, 1, 2, 2], (8, 10), LIMITS)[2] is not None
    bad = [
        (([[1, 2]] * 4, [1] * 4, None), "number of points is 4"),
        (([[1, 2]], [True], None), "labels\\[0\\] is True"),
        (([[11, 2]], [1], None), "outside the 10x8 image"),
        (([], [], [5, 1, 2, 3]), "x1 < x2 and y1 < y2"),
        (([], [], [0, 0, 20, 3]), "box corner \\(20, 3\\) lies outside"),
        (([[1, float("nan")]], [1], None), "points\\[0\\]\\[1\\] must be a finite number"),
        (([], [], None), "at least one point"),
    ]
    for (points, labels, xyxy), message in bad:
        with pytest.raises(ValueError, match=message):
            check_clicks(points, labels, xyxy, (8, 10), LIMITS)


def test_amg_work_grows_with_grid_layers_and_pixels():
    limits = Limits(max_amg_work=1024)
    check_amg_work(32, 0, (1000, 1000), limits)  # 1,024 point-megapixels: the limit
    check_amg_work(8, 0, (4000, 4000), limits)
    with pytest.raises(LimitExceeded, match="is 2,048, .* use points_per_side <= 22 for this"):
        check_amg_work(32, 1, (1000, 1000), limits)
    with pytest.raises(LimitExceeded, match="4096x4096 image with points_per_side=32"):
        check_amg_work(32, 0, (4096, 4096), limits)
