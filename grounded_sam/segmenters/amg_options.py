"""The one check of automatic-mask-generation options (``SamSegmenter.generate``'s keywords).

Used by :func:`grounded_sam.segmenters.amg.generate_masks` on every call and by
``ClipMaskDetector`` when it is built, so a bad option fails before any model runs.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from grounded_sam.segmenters.amg import generate_masks
from grounded_sam.validation import check_finite, check_float, check_int, check_unit

AMG_OPTIONS = tuple(
    name
    for name, p in inspect.signature(generate_masks).parameters.items()
    if p.kind is inspect.Parameter.KEYWORD_ONLY
)
"""Every keyword ``generate`` accepts, in its signature's order."""

_UNIT = ("box_nms_thresh", "crop_nms_thresh")
_FILTERS = ("pred_iou_thresh", "stability_score_thresh")  # any finite value (> 1 keeps none)


def check_amg_options(options: dict[str, Any]) -> dict[str, Any]:
    """Checked copies of the given options (only those given; defaults are not added).

    Ranges: ``points_per_side`` int >= 1 (or None with ``point_grids``); ``points_per_batch``
    int >= 1; ``crop_n_layers`` int >= 0; ``crop_n_points_downscale_factor`` int >= 1;
    ``min_mask_region_area`` int >= 0; ``box_nms_thresh`` and ``crop_nms_thresh`` in [0, 1];
    the filters ``pred_iou_thresh`` and ``stability_score_thresh`` finite (above 1: none kept);
    ``crop_overlap_ratio`` in [0, 1); ``stability_score_offset`` finite >= 0; ``point_grids``
    a list of float (P, 2) (x, y) arrays in [0, 1], P >= 1.

    Raises:
        TypeError: an unknown option (the known ones are listed) or a value of the wrong type.
        ValueError: a value out of range, NaN or inf; the message names option, value, range.
    """
    unknown = sorted(set(options) - set(AMG_OPTIONS))
    if unknown:
        raise TypeError(
            f"unknown automatic-mask option(s) {unknown}; the options are {list(AMG_OPTIONS)}"
        )
    out = dict(options)
    for name, value in options.items():
        if name == "points_per_side":
            out[name] = None if value is None else check_int(name, value, low=1)
        elif name in ("points_per_batch", "crop_n_points_downscale_factor"):
            out[name] = check_int(name, value, low=1)
        elif name in ("crop_n_layers", "min_mask_region_area"):
            out[name] = check_int(name, value, low=0)
        elif name in _UNIT:
            out[name] = check_unit(name, value)
        elif name in _FILTERS:
            out[name] = check_float(name, value)
        elif name == "crop_overlap_ratio":
            out[name] = check_float(name, value, low=0.0, high=1.0)
            if out[name] >= 1.0:
                raise ValueError(f"crop_overlap_ratio must be in [0, 1), got {value}")
        elif name == "stability_score_offset":
            out[name] = check_float(name, value, low=0.0)
        elif name == "point_grids" and value is not None:
            out[name] = [_check_grid(i, g) for i, g in enumerate(value)]
    return out


def _check_grid(index: int, grid: Any) -> np.ndarray:
    name = f"point_grids[{index}]"
    check_finite(name, grid)
    arr = np.asarray(grid, dtype=np.float64).reshape(-1, 2) if np.size(grid) % 2 == 0 else None
    if arr is None or len(arr) == 0 or np.ndim(grid) != 2:
        raise ValueError(f"{name} must be a float (P, 2) array with P >= 1, got {np.shape(grid)}")
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise ValueError(
            f"{name} holds (x, y) normalised to [0, 1]; got values in "
            f"[{arr.min():g}, {arr.max():g}]"
        )
    return arr
