"""``Detections`` <-> Roboflow supervision's ``sv.Detections`` (optional: ``pip install
supervision`` or the ``interop`` extra; imported when called).

Field by field (N detections on an H x W image):

==========================  ===================================================
grounded_sam                supervision
==========================  ===================================================
``xyxy`` float32 (N, 4)     ``xyxy`` float32 (N, 4), the same pixels (x1, y1, x2, y2)
``scores`` float32 (N,)     ``confidence`` float32 (N,)
``class_id`` int64 (N,)     ``class_id`` int (N,), -1 kept for "no class"
``masks`` bool (N, H, W)    ``mask`` bool (N, H, W) (``None`` when we have none)
``phrases``                 ``data["phrase"]`` (list of str)
``mask_scores``             ``data["mask_score"]`` float32 (N,) (when not None)
``data[key]``               ``data[key]`` (e.g. ``class_name``, ``needs_review``)
``image_size`` (H, W)       ``metadata["image_size"]``
==========================  ===================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grounded_sam.types import Detections

_OURS = ("phrase", "mask_score")


def _sv() -> Any:
    try:
        import supervision
    except ImportError as e:
        raise ImportError(
            "converting to or from supervision needs it installed: `pip install supervision` "
            "(or `pip install grounded-sam[interop]`)"
        ) from e
    return supervision


def to_supervision(detections: Detections) -> Any:
    """An ``sv.Detections`` holding the same boxes, masks, scores, class ids and data (see the
    module docstring for where each field goes); arrays are shared, not copied."""
    sv = _sv()
    data: dict[str, Any] = {k: _as_sv_value(v) for k, v in detections.data.items()}
    data["phrase"] = np.array(detections.phrases, dtype=object).astype(str)
    if detections.mask_scores is not None:
        data["mask_score"] = detections.mask_scores
    return sv.Detections(
        xyxy=detections.xyxy,
        mask=detections.masks,
        confidence=detections.scores,
        class_id=detections.class_id,
        data=data,
        metadata={"image_size": tuple(detections.image_size)},
    )


def _as_sv_value(value: Any) -> Any:
    """supervision keeps a data value as an ndarray or a list of length N."""
    return value if isinstance(value, np.ndarray) else list(value)


def from_supervision(sv_detections: Any, image_size: tuple[int, int] | None = None) -> Detections:
    """``Detections`` from an ``sv.Detections`` (ours, from :func:`to_supervision`, or any
    model's adapter in supervision).

    Args:
        sv_detections: an ``sv.Detections``.
        image_size: (H, W) of the image; default: the masks' size, else
            ``metadata["image_size"]``.

    Missing fields become: ``confidence`` None -> scores 1.0 (ground truth, e.g. a dataset
    loaded with ``sv.DetectionDataset``); ``class_id`` None -> -1; no ``data["phrase"]`` ->
    ``data["class_name"]`` as the phrases, else ``""``.

    Raises:
        ValueError: no masks and no ``image_size`` (given or in the metadata): pass it.
    """
    d = sv_detections
    n = len(d)
    if image_size is None:
        if d.mask is not None:
            image_size = tuple(d.mask.shape[1:3])
        else:
            image_size = (getattr(d, "metadata", None) or {}).get("image_size")
    if image_size is None:
        raise ValueError(
            "these sv.Detections have no masks and no metadata['image_size']: pass "
            "image_size=(H, W) of the image"
        )
    data = dict(d.data)
    phrases = data.pop("phrase", None)
    if phrases is None:
        phrases = data.get("class_name", [""] * n)
    mask_scores = data.pop("mask_score", None)
    return Detections(
        xyxy=np.asarray(d.xyxy, dtype=np.float32).reshape(n, 4),
        scores=np.ones(n, np.float32) if d.confidence is None else d.confidence,
        phrases=[str(p) for p in phrases],
        class_id=np.full(n, -1, np.int64) if d.class_id is None else d.class_id,
        masks=None if d.mask is None else np.asarray(d.mask, dtype=bool),
        mask_scores=mask_scores,
        image_size=tuple(int(v) for v in image_size),
        data=data,
    )
