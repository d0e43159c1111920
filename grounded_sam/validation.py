"""Argument checks shared by every public entry point: one message style, project errors.

Each check names the argument, the value it got and the allowed range, and returns the value
in its canonical type (``int``, ``float``, a float array). NaN and inf are refused wherever a
number reaches a model. Components keep one small function for their options (e.g.
:func:`grounded_sam.segmenters.amg_options.check_amg_options`) built from these.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np


def check_int(name: str, value: Any, *, low: int, high: int | None = None) -> int:
    """``value`` as an ``int`` in ``[low, high]`` (``high`` None: no upper bound).

    Integral floats (``2.0``) are accepted as the integer they equal.

    Raises:
        TypeError: not a number (strings, None, bools).
        ValueError: a fraction (``2.5``), NaN, inf, or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if not isinstance(value, Integral):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{name} must be a whole number, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be an integer {allowed}, got {value}")
    return value


def check_float(name: str, value: Any, *, low: float = -math.inf, high: float = math.inf) -> float:
    """``value`` as a finite ``float`` in ``[low, high]``.

    Raises:
        TypeError: not a real number (strings, None, bools are refused).
        ValueError: NaN, inf or out of range.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}], got {value}")
    if not low <= value <= high:
        raise ValueError(
            f"{name} must be in [{low:g}, {high:g}], got {value:g} (a finite number in that range)"
        )
    return value


def check_unit(name: str, value: Any) -> float:
    """A finite float in [0, 1] (thresholds, IoUs, fractions)."""
    return check_float(name, value, low=0.0, high=1.0)


def check_finite(name: str, value: Any) -> None:
    """Refuse an array (numpy, torch tensor or nested lists) that is not all finite numbers.

    The value is only read, never converted, so callers keep its dtype.

    Raises:
        TypeError: the values are not numbers (strings, objects, None, ragged lists).
        ValueError: an entry is NaN or inf.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().float().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged nested lists
        raise TypeError(f"{name} must be an array of numbers, got {_short(value)} ({e})") from e
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype} ({_short(value)})")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[:3].tolist()
        raise ValueError(f"{name} must be finite; NaN or inf at index {bad} of {_short(value)}")


def check_detections(name: str, value: Any, image: Any = None) -> Any:
    """``value`` itself when it is a :class:`grounded_sam.Detections` (of ``image``, an
    (H, W, ...) array, when given), else a ``TypeError`` (``ValueError``: another size)."""
    from grounded_sam.types import Detections

    if not isinstance(value, Detections):
        raise TypeError(
            f"{name} must be grounded_sam.Detections (from detect(...) or Detections(xyxy=..., "
            f"...)), got {type(value).__name__}"
        )
    if image is not None and value.image_size != tuple(image.shape[:2]):
        raise ValueError(
            f"the {name} belong to an image of (H, W) = {value.image_size}, but this image "
            f"is {tuple(image.shape[:2])}; pass the image they were detected on"
        )
    return value


def _short(value: Any, limit: int = 80) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
