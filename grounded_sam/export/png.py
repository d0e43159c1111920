"""Per-image PNG instance masks with a JSON sidecar.

For each image ``<name>`` the writer puts two files under ``out_dir/masks/``:

- ``<name>.png``: a single-channel instance map of the image's size. Pixel value ``i + 1``
  means detection ``i`` (its position in the ``Detections``), 0 means background. 8-bit when
  there are at most 255 detections, otherwise 16-bit (PIL mode ``I;16``; up to 65,535).
- ``<name>.json``: the sidecar, ``{"file_name", "image_size": [H, W], "png", "overlap",
  "instances": [{"value", "class_id", "class_name", "phrase", "score", "mask_score",
  "needs_review", "area", "visible_area", "bbox"}, ...]}`` with one entry per detection in the
  same order (``bbox`` is the mask's x, y, w, h; ``area`` its pixel count; ``visible_area``
  the pixels it owns in the PNG).

Overlap rule: a pixel covered by several masks belongs to the detection with the **higher
score**; on equal scores the earlier detection wins. A detection hidden entirely keeps its
sidecar entry with ``visible_area`` 0. The sidecar is written after the PNG, so a sidecar on
disk means that image is finished (what a resumed run checks).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grounded_sam.export._io import atomic_write_bytes, atomic_write_text, relative_output_path
from grounded_sam.geometry import xyxy_to_xywh
from grounded_sam.masks import mask_area, masks_to_xyxy
from grounded_sam.types import Detections

OVERLAP_RULE = "higher score wins; on equal scores the earlier detection wins"
_MAX_INSTANCES = 65535


def instance_map(detections: Detections) -> np.ndarray:
    """The (H, W) instance map of ``detections``: value ``i + 1`` for detection ``i``, 0 background.

    uint8 for at most 255 detections, uint16 up to 65,535. Overlaps follow :data:`OVERLAP_RULE`.
    """
    n = len(detections)
    h, w = detections.image_size
    if n and detections.masks is None:
        raise ValueError(
            "PNG instance masks need masks, but the detections have none: run the segment "
            "step (Pipeline.segment) first"
        )
    if n > _MAX_INSTANCES:
        raise ValueError(f"{n} detections do not fit a 16-bit PNG (at most {_MAX_INSTANCES})")
    out = np.zeros((h, w), dtype=np.uint8 if n <= 255 else np.uint16)
    if n == 0:
        return out
    assert detections.masks is not None
    # paint the lowest priority first: ascending score, and for equal scores the later one first
    order = np.lexsort((-np.arange(n), detections.scores))
    for i in order:
        out[detections.masks[i]] = i + 1
    return out


def sidecar(
    detections: Detections,
    file_name: str,
    *,
    classes: Sequence[str] | None = None,
    png_name: str | None = None,
    instances: np.ndarray | None = None,
) -> dict[str, Any]:
    """The JSON-able sidecar dict of one image (see the module docstring)."""
    n = len(detections)
    if instances is None:
        instances = instance_map(detections)
    visible = np.bincount(instances.ravel(), minlength=n + 1)[1:]
    names = detections.data.get("class_name")
    review = detections.data.get("needs_review")
    if n:
        assert detections.masks is not None
        boxes = xyxy_to_xywh(masks_to_xyxy(detections.masks))
        areas = mask_area(detections.masks)
    items = []
    for i in range(n):
        cid = int(detections.class_id[i])
        if names is not None:
            name = str(names[i])
        elif classes is not None and 0 <= cid < len(classes):
            name = str(classes[cid])
        else:
            name = ""
        item: dict[str, Any] = {
            "value": i + 1,
            "class_id": cid,
            "class_name": name,
            "phrase": detections.phrases[i],
            "score": round(float(detections.scores[i]), 6),
            "mask_score": (
                None
                if detections.mask_scores is None
                else round(float(detections.mask_scores[i]), 6)
            ),
            "needs_review": None if review is None else bool(review[i]),
            "area": int(areas[i]),
            "visible_area": int(visible[i]),
            "bbox": [float(v) for v in boxes[i]],
        }
        items.append(item)
    return {
        "file_name": file_name,
        "image_size": list(detections.image_size),
        "png": png_name,
        "overlap": OVERLAP_RULE,
        "classes": None if classes is None else list(classes),
        "instances": items,
    }


def encode_png(instances: np.ndarray) -> bytes:
    """PNG bytes of a uint8 or uint16 (H, W) instance map (8- or 16-bit grayscale)."""
    from PIL import Image

    if instances.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"instance map must be uint8 or uint16, got {instances.dtype}")
    # PIL picks the mode from the dtype: uint8 -> "L", uint16 -> "I;16"
    image = Image.fromarray(np.ascontiguousarray(instances))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def read_instance_map(path: str | Path) -> np.ndarray:
    """Read an instance PNG back as a uint8 or uint16 (H, W) array."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode == "L":
            return np.asarray(image, dtype=np.uint8).copy()
        if image.mode in ("I;16", "I;16B", "I;16L", "I"):
            return np.asarray(image).astype(np.uint16)
        raise ValueError(f"{path} is a {image.mode} image, not an 8/16-bit instance map")


def detections_from_png(path: str | Path) -> Detections:
    """Rebuild ``Detections`` from an instance PNG and its sidecar (``.json`` beside it).

    Masks are the *visible* pixels of each instance (what the PNG stores); scores, classes,
    phrases and review flags come from the sidecar.
    """
    path = Path(path)
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    inst = read_instance_map(path)
    h, w = inst.shape
    items = meta["instances"]
    if not items:
        return Detections.empty((h, w), with_masks=True)
    masks = np.stack([inst == it["value"] for it in items])
    data: dict[str, Any] = {"class_name": [it["class_name"] for it in items]}
    if all(it["needs_review"] is not None for it in items):
        data["needs_review"] = np.array([it["needs_review"] for it in items], dtype=bool)
    has_ms = all(it["mask_score"] is not None for it in items)
    return Detections(
        xyxy=masks_to_xyxy(masks),
        scores=np.array([it["score"] for it in items], np.float32),
        phrases=[it["phrase"] for it in items],
        class_id=np.array([it["class_id"] for it in items], np.int64),
        masks=masks,
        mask_scores=np.array([it["mask_score"] for it in items], np.float32) if has_ms else None,
        image_size=(h, w),
        data=data,
    )


class PngWriter:
    """Writes ``masks/<name>.png`` + ``masks/<name>.json`` per image under ``out_dir``.

    Args:
        out_dir: the output folder.
        classes: the class list, for ``class_name`` when the detections carry no
            ``data["class_name"]`` (the label step sets it) and for the sidecar's ``classes``.
    """

    def __init__(self, out_dir: str | Path, classes: Sequence[str] | None = None):
        self.out_dir = Path(out_dir)
        self.classes = None if classes is None else [str(c) for c in classes]

    def png_path(self, file_name: str) -> Path:
        return self.out_dir / "masks" / relative_output_path(file_name, ".png")

    def sidecar_path(self, file_name: str) -> Path:
        return self.out_dir / "masks" / relative_output_path(file_name, ".json")

    def __contains__(self, file_name: object) -> bool:
        return isinstance(file_name, str) and self.sidecar_path(file_name).exists()

    def add(
        self, file_name: str, detections: Detections, *, output_name: str | None = None
    ) -> Path:
        """Write the instance PNG, then its sidecar (both atomically). Returns the PNG path.

        ``output_name`` (default ``file_name``) names the files (``masks/<output_name>`` with
        ``.png`` / ``.json``); the sidecar records ``file_name``.
        """
        name = file_name if output_name is None else output_name
        png = self.png_path(name)
        inst = instance_map(detections)
        meta = sidecar(
            detections, file_name, classes=self.classes, png_name=png.name, instances=inst
        )
        atomic_write_bytes(png, encode_png(inst))
        atomic_write_text(self.sidecar_path(name), json.dumps(meta, ensure_ascii=False))
        return png
