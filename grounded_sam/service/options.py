"""Checks of a web request's options, at the edge, before any model runs.

Values arrive from JSON and page widgets: numbers may be strings, bools, NaN or out of range,
point lists may be ragged. Each function here turns them into plain Python / numpy values or
raises ``ValueError`` / :class:`~grounded_sam.service.limits.LimitExceeded` naming the option,
the value and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from grounded_sam.service.limits import Limits, check_at_most

# Everything mode's options: name -> (kind, low, high); None = unbounded. Integer options
# whose work grows with the value are bounded by Limits instead (see check_amg_options).
_AMG_RULES: dict[str, tuple[type, float | None, float | None]] = {
    "points_per_side": (int, 1, None),
    "points_per_batch": (int, 1, 1024),
    "pred_iou_thresh": (float, 0.0, 1.0),
    "stability_score_thresh": (float, 0.0, 1.0),
    "stability_score_offset": (float, 0.0, None),
    "box_nms_thresh": (float, 0.0, 1.0),
    "crop_n_layers": (int, 0, None),
    "crop_nms_thresh": (float, 0.0, 1.0),
    "crop_overlap_ratio": (float, 0.0, 0.99),
    "crop_n_points_downscale_factor": (int, 1, 64),
    "min_mask_region_area": (int, 0, None),
}
AMG_OPTION_NAMES = tuple(_AMG_RULES)


def number(name: str, value: Any, *, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a finite float in ``[low, high]``; refuses bools, strings, NaN and inf."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value:g}")
    return value


def integer(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]``; a float is accepted only when it is whole."""
    out = number(name, value, low=low, high=high)
    if out != int(out):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    return int(out)


def unit_interval(name: str, value: Any) -> float | None:
    """A threshold in [0, 1]; None stays None (the model's default)."""
    return None if value is None else number(name, value, low=0.0, high=1.0)


def check_amg_options(options: Mapping[str, Any] | None, limits: Limits) -> dict[str, Any]:
    """Everything mode's options, each checked (type, range) and the costly ones bounded.

    ``points_per_side`` is at most ``limits.max_points_per_side`` and ``crop_n_layers`` at most
    ``limits.max_crop_layers``; unknown names are refused with the list of known ones.
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ValueError(f"options must be a JSON object of name: value, got {options!r}")
    unknown = sorted(set(options) - set(_AMG_RULES))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; allowed: {sorted(_AMG_RULES)}")
    out: dict[str, Any] = {}
    for name, value in options.items():
        kind, low, high = _AMG_RULES[name]
        check = integer if kind is int else number
        out[name] = check(name, value, low=low, high=high)
    check_at_most(
        "points_per_side", out.get("points_per_side", 0), limits.max_points_per_side,
        "max_points_per_side",
    )  # fmt: skip
    check_at_most(
        "crop_n_layers", out.get("crop_n_layers", 0), limits.max_crop_layers, "max_crop_layers"
    )
    return out


def check_amg_work(
    points_per_side: int, crop_n_layers: int, image_size: tuple[int, int], limits: Limits
) -> None:
    """Bound automatic masks' cost on this image: ``points_per_side² x (1 + crop_n_layers) x
    megapixels`` at most ``limits.max_amg_work`` (every prompt's masks are upscaled to the
    image, so the work grows with both the grid and the image; crop layers add about a grid's
    worth each)."""
    h, w = image_size
    megapixels = h * w / 1e6
    work = points_per_side**2 * (1 + crop_n_layers) * megapixels
    best = int((limits.max_amg_work / ((1 + crop_n_layers) * megapixels)) ** 0.5)
    check_at_most(
        f"automatic masks on a {w}x{h} image with points_per_side={points_per_side} and "
        f"crop_n_layers={crop_n_layers} (points_per_side² x (1 + crop_n_layers) x megapixels)",
        round(work),
        limits.max_amg_work,
        "max_amg_work",
        hint=f"use points_per_side <= {best} for this image, or a smaller image",
    )


def check_prompt(prompt: Any, limits: Limits) -> list[str]:
    """The prompt's classes (``"cat . dog"`` -> ``["cat", "dog"]``), bounded in length and count."""
    from grounded_sam.classes import parse_classes

    if not isinstance(prompt, str):
        raise ValueError(f"prompt must be text such as 'cat . dog', got {prompt!r}")
    check_at_most("the prompt's length", len(prompt), limits.max_prompt_chars, "max_prompt_chars")
    classes = parse_classes(prompt)
    check_at_most("the number of classes", len(classes), limits.max_classes, "max_classes")
    return classes


def check_clicks(
    points: Any, labels: Any, box: Any, image_size: tuple[int, int], limits: Limits
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Clicked points, their labels and an optional box, checked against the image.

    Args:
        points: ``[[x, y], …]`` pixels of the image (``None`` or ``[]``: none).
        labels: ``[1, 0, …]``, one per point, 1 = foreground, 0 = background.
        box: ``[x1, y1, x2, y2]`` pixels with x1 < x2 and y1 < y2, or ``None`` / ``[]``.
        image_size: ``(H, W)``: every coordinate must lie in ``[0, W] x [0, H]``.

    Returns:
        ``(points float32 (K, 2), labels int64 (K,), box float32 (4,) or None)``.
    """
    h, w = image_size
    pts = _finite_rows("points", points or [], 2, "[[x, y], …]")
    check_at_most("the number of points", len(pts), limits.max_points, "max_points")
    lab = list(labels or [])
    if len(lab) != len(pts):
        raise ValueError(f"got {len(pts)} points but {len(lab)} labels; give one label per point")
    for i, v in enumerate(lab):
        if isinstance(v, bool) or v not in (0, 1):
            raise ValueError(f"labels[{i}] is {v!r}; use 1 (foreground) or 0 (background)")
    xyxy = None
    if box is not None and len(box) > 0:
        (xyxy,) = _finite_rows("box", [box], 4, "[x1, y1, x2, y2]")
        if not (xyxy[0] < xyxy[2] and xyxy[1] < xyxy[3]):
            raise ValueError(f"box {xyxy.tolist()} must have x1 < x2 and y1 < y2 (pixels)")
        _inside("box corner", xyxy.reshape(2, 2), w, h)
    if not len(pts) and xyxy is None:
        raise ValueError("give at least one point (with its label) or a box")
    _inside("point", pts, w, h)
    return pts, np.asarray(lab, np.int64), xyxy


def _finite_rows(name: str, rows: Any, width: int, shape: str) -> np.ndarray:
    if not isinstance(rows, Sequence) or isinstance(rows, str):
        raise ValueError(f"{name} must be a list like {shape}, got {rows!r}")
    out = np.zeros((len(rows), width), np.float32)
    for i, row in enumerate(rows):
        if not isinstance(row, Sequence) or isinstance(row, str) or len(row) != width:
            raise ValueError(f"{name}[{i}] is {row!r}; expected {width} numbers as in {shape}")
        out[i] = [number(f"{name}[{i}][{j}]", v) for j, v in enumerate(row)]
    return out


def _inside(what: str, xy: np.ndarray, w: int, h: int) -> None:
    for x, y in xy:
        if not (0 <= x <= w and 0 <= y <= h):
            raise ValueError(
                f"{what} ({x:g}, {y:g}) lies outside the {w}x{h} image; coordinates are pixels"
            )
