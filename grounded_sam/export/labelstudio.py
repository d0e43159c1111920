"""Label Studio pre-annotations: tasks with predictions, and the labelling config they match.

Written under ``out_dir`` (``auto_label``: ``OUT/labelstudio/``)::

    tasks.json     a list of tasks, one per image, to import into a project
    config.xml     the project's labelling config (an image with BrushLabels, one per class)

One task::

    {"data": {"image": "/data/local-files/?d=photos/img1.jpg", "file_name": "img1.jpg",
              "needs_review": true, "review_count": 1},
     "predictions": [{"model_version": "grounded-sam", "score": 0.41,
                      "result": [{"id": "img1-0", "type": "brushlabels",
                                  "from_name": "label", "to_name": "image",
                                  "original_width": W, "original_height": H,
                                  "image_rotation": 0, "score": 0.41,
                                  "value": {"format": "rle", "rle": [...],
                                            "brushlabels": ["cat"]},
                                  "meta": {"text": ["needs review"]}}, ...]}]}

Masks are **brush RLE in Label Studio's own encoding** (:func:`brush_rle`), not polygons:
a brush region holds the mask pixel for pixel (holes, several parts), while a polygon would
lose the holes and join the parts (see :mod:`grounded_sam.export.yolo`). A region's ``score``
is the detector's; the prediction's ``score`` is the lowest of its regions, so sorting the
data manager by prediction score puts the least certain images first. The review flag
(``needs_review``) is a task data field (filter on it in the data manager) and a region meta
text. Only detections with a class and a non-empty mask are written (a region needs a label).

Images are referenced as ``/data/local-files/?d=<path>``, which Label Studio serves from a
local-files storage: start it with ``LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true`` and
``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<document root>``, and add a local storage whose
path is the image folder (under that root). ``<path>`` is the image's path relative to the
document root given to :meth:`LabelStudioWriter.add`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np

from grounded_sam.export._io import atomic_write_text
from grounded_sam.masks import mask_area
from grounded_sam.types import Detections

FROM_NAME, TO_NAME = "label", "image"
# Label Studio's brush RLE header: 8-bit words, run-length fields of 3, 4, 8 and 16 bits
_WORD_BITS = 8
_RLE_SIZES = (3, 4, 8, 16)


def brush_rle(mask: np.ndarray) -> list[int]:
    """A bool (H, W) mask in Label Studio's brush RLE: a list of byte values (0-255).

    The encoded image is the mask as RGBA, row-major, 255 in all four channels inside the mask
    and 0 outside (what Label Studio's ``mask2rle(mask * 255)`` encodes), so the bit stream is
    a 32-bit value count, the 5-bit word size minus one, four 4-bit run-length field sizes
    minus one, then for each run ``1``, a 2-bit field-size index, the run length minus one and
    the 8-bit value (runs over 65,536 values are split). Label Studio's ``decode_rle`` gives
    back ``np.repeat(mask.ravel() * 255, 4)``.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {mask.shape}")
    flat = mask.ravel()
    num = flat.size * 4
    bits = [f"{num:032b}", f"{_WORD_BITS - 1:05b}", *(f"{s - 1:04b}" for s in _RLE_SIZES)]
    if flat.size:
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        starts = np.concatenate([[0], change])
        lengths = np.diff(np.concatenate([starts, [flat.size]])) * 4  # 4 channels per pixel
        for start, length in zip(starts.tolist(), lengths.tolist(), strict=True):
            value = f"{255 if flat[start] else 0:08b}"
            while length > 0:
                run = min(length, 1 << 16)
                size = next(k for k, s in enumerate(_RLE_SIZES) if run <= 1 << s)
                bits.append(f"1{size:02b}{run - 1:0{_RLE_SIZES[size]}b}{value}")
                length -= run
    stream = "".join(bits)
    stream += "0" * (8 - len(stream) % 8)  # as Label Studio pads: always 1 to 8 bits
    return np.packbits(np.frombuffer(stream.encode(), np.uint8) - ord("0")).tolist()


def labelstudio_config(classes: Sequence[str]) -> str:
    """The labelling config XML of these tasks: an ``Image`` named ``image`` and
    ``BrushLabels`` named ``label`` with one ``Label`` per class, in class order."""
    labels = "\n".join(f"    <Label value={quoteattr(str(c))}/>" for c in classes)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
        f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">\n'
        f"{labels}\n"
        "  </BrushLabels>\n"
        "</View>\n"
    )


def local_files_url(path: str) -> str:
    """``/data/local-files/?d=<path>`` for a path relative to the document root (posix)."""
    return "/data/local-files/?d=" + quote(path.replace("\\", "/"), safe="/")


class LabelStudioWriter:
    """Collects one task per image and writes ``tasks.json`` and ``config.xml``.

    Args:
        classes: the class names (the labels of the config, in order).
        model_version: the predictions' ``model_version`` (shown in Label Studio).
    """

    def __init__(self, classes: Sequence[str], *, model_version: str = "grounded-sam"):
        from grounded_sam.export.coco import _check_classes

        self.classes = _check_classes(classes)
        self.model_version = model_version
        self.tasks: list[dict[str, Any]] = []

    @property
    def num_regions(self) -> int:
        return sum(len(t["predictions"][0]["result"]) for t in self.tasks)

    def add(self, file_name: str, detections: Detections, *, image: str) -> dict[str, Any]:
        """Add the task of one image; returns it.

        Args:
            file_name: the image's name relative to the dataset root (kept in ``data``).
            detections: its detections, masks bool (N, H, W) at the image's size.
            image: the image's path relative to Label Studio's local-files document root
                (e.g. ``"photos/img1.jpg"``), or a full URL (``http...``, ``s3://...``).
        """
        if len(detections) and detections.masks is None:
            raise ValueError(
                f"Label Studio brush regions need masks, but the detections of {file_name!r} "
                f"have none: run the segment step (Pipeline.segment) first"
            )
        if (detections.class_id >= len(self.classes)).any():
            raise ValueError(
                f"class_id out of range for {len(self.classes)} classes {self.classes}; run "
                f"the label step with this class list first"
            )
        h, w = detections.image_size
        review = detections.data.get("needs_review")
        keep = detections.class_id >= 0
        if len(detections):
            keep &= mask_area(detections.masks) > 0
        stem = Path(file_name).stem
        result = []
        for i in np.flatnonzero(keep).tolist():
            region: dict[str, Any] = {
                "id": f"{stem}-{i}",
                "type": "brushlabels",
                "from_name": FROM_NAME,
                "to_name": TO_NAME,
                "original_width": int(w),
                "original_height": int(h),
                "image_rotation": 0,
                "score": float(detections.scores[i]),
                "value": {
                    "format": "rle",
                    "rle": brush_rle(detections.masks[i]),
                    "brushlabels": [self.classes[int(detections.class_id[i])]],
                },
            }
            if review is not None and bool(review[i]):
                region["meta"] = {"text": ["needs review"]}
            result.append(region)
        flags = [bool(review[i]) for i in np.flatnonzero(keep)] if review is not None else []
        url = image if "://" in image else local_files_url(image)
        task = {
            "data": {
                "image": url,
                "file_name": file_name,
                "needs_review": any(flags),
                "review_count": sum(flags),
            },
            "predictions": [
                {
                    "model_version": self.model_version,
                    "score": min((r["score"] for r in result), default=0.0),
                    "result": result,
                }
            ],
        }
        self.tasks.append(task)
        return task

    def write(self, out_dir: str | Path) -> Path:
        """Write ``out_dir/tasks.json`` and ``out_dir/config.xml`` (atomically); returns the
        folder."""
        out = Path(out_dir)
        atomic_write_text(out / "config.xml", labelstudio_config(self.classes))
        atomic_write_text(out / "tasks.json", json.dumps(self.tasks, ensure_ascii=False))
        return out
