"""COCO instance segmentation export: an incremental, resumable writer and a loader.

One JSON file holds ``images``, ``annotations`` and ``categories`` as the COCO format and
pycocotools expect them:

- ``categories``: one per class, ``id`` = 1-based position in the class list (stable: the
  same class list always gives the same ids), ``name`` = the class name.
- ``images``: ``id``, ``file_name``, ``height``, ``width`` (plus any extra keys given to
  :meth:`CocoWriter.add`).
- ``annotations``: ``id``, ``image_id``, ``category_id``, ``segmentation`` (compressed RLE,
  ``{"size": [H, W], "counts": str}``), ``area`` (the mask's pixel count), ``bbox`` (x, y, w, h
  in pixels, the tight box of the *mask*), ``iscrowd`` = 0 (always: an RLE mask with holes or
  several parts is still one instance), ``score`` (detector confidence), and the review
  fields ``needs_review``, ``phrase`` and ``mask_score`` when the detections carry them.

Detections without a class (``class_id == -1``) are dropped by default and counted in
``info["dropped_unknown"]``; with ``unknown="category"`` they are kept under an extra
category named ``"unknown"`` whose id is ``len(classes) + 1``. Detections whose mask is empty
have no object to export; they are dropped and counted in ``info["dropped_empty"]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grounded_sam.export._io import atomic_write_text
from grounded_sam.geometry import xywh_to_xyxy, xyxy_to_xywh
from grounded_sam.masks import (
    mask_area,
    mask_to_rle,
    masks_to_xyxy,
    rle_area,
    rle_to_mask,
    rles_to_xyxy,
)
from grounded_sam.types import Detections

UNKNOWN_CATEGORY = "unknown"
_UNKNOWN_MODES = ("drop", "category")


def _check_classes(classes: Sequence[str]) -> list[str]:
    if isinstance(classes, str):
        raise TypeError(f"classes must be a list of names, got the string {classes!r}")
    names = [str(c) for c in classes]
    if not names:
        raise ValueError("classes is empty: give at least one class name")
    if any(not n.strip() for n in names):
        raise ValueError(f"class names must be non-empty, got {names}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"class names must be unique; repeated: {dup}")
    return names


class CocoWriter:
    """Collects per-image detections and writes one COCO instance-segmentation JSON.

    Built for a resumable labelling loop: :meth:`add` one image at a time, :meth:`write` the
    file atomically whenever you like, and after an interruption rebuild the writer with
    :meth:`load` and skip the images it already holds (``file_name in writer``). Image and
    annotation ids are assigned in the order of :meth:`add`, so a resumed run that adds the
    remaining images in the same order produces the same file as an uninterrupted one.

    Args:
        classes: the class names; category ids are their 1-based positions.
        unknown: ``"drop"`` (default) drops detections with ``class_id == -1``;
            ``"category"`` keeps them under an extra ``"unknown"`` category.
    """

    def __init__(self, classes: Sequence[str], *, unknown: str = "drop"):
        if unknown not in _UNKNOWN_MODES:
            raise ValueError(f"unknown must be one of {_UNKNOWN_MODES}, got {unknown!r}")
        self.classes = _check_classes(classes)
        if unknown == "category" and UNKNOWN_CATEGORY in self.classes:
            raise ValueError(
                f"a class is named {UNKNOWN_CATEGORY!r}, which unknown='category' needs for "
                f"detections without a class; rename the class or use unknown='drop'"
            )
        self.unknown = unknown
        self.dropped_unknown = 0
        self.dropped_empty = 0
        self._images: list[dict[str, Any]] = []
        self._annotations: list[dict[str, Any]] = []
        self._ids_by_file: dict[str, int] = {}
        self._image_ids: set[int] = set()
        self._max_id = 0

    # ------------------------------------------------------------------ queries
    @property
    def categories(self) -> list[dict[str, Any]]:
        """``[{"id": 1, "name": classes[0], "supercategory": ""}, ...]`` (+ unknown)."""
        cats = [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(self.classes)]
        if self.unknown == "category":
            cats.append(
                {"id": len(self.classes) + 1, "name": UNKNOWN_CATEGORY, "supercategory": ""}
            )
        return cats

    def __contains__(self, file_name: object) -> bool:
        return file_name in self._ids_by_file

    def __len__(self) -> int:
        """Number of images added."""
        return len(self._images)

    @property
    def num_annotations(self) -> int:
        return len(self._annotations)

    def image_id(self, file_name: str) -> int:
        """The id given to ``file_name`` (``KeyError`` if it was not added)."""
        return self._ids_by_file[file_name]

    # ------------------------------------------------------------------ adding
    def add(
        self,
        image: str | Mapping[str, Any],
        detections: Detections,
        *,
        image_id: int | None = None,
        rles: Sequence[Mapping[str, Any]] | None = None,
    ) -> int:
        """Add one image and its detections; returns the image id.

        Args:
            image: the image's ``file_name`` (a path relative to the dataset root), or a dict
                with ``"file_name"`` and optionally ``"id"``, ``"height"``, ``"width"`` and any
                extra keys to store in the image record.
            detections: the image's detections with ``masks`` (bool (N, H, W)); ``height`` and
                ``width`` come from ``detections.image_size``.
            image_id: the id to give the image (default: one more than the largest so far).
            rles: the masks already encoded, one COCO RLE per detection (``{"size": [H, W],
                "counts": str}`` as :meth:`Detections.to_dict` writes them), used instead of
                ``detections.masks``: written as they are, ``area`` and ``bbox`` read from the
                RLE (:func:`~grounded_sam.masks.rle_area`, ``rles_to_xyxy``); no mask is decoded.

        Raises:
            ValueError: the file name was added before, the id is taken, the masks are
                missing, or a given height/width disagrees with the detections.
        """
        info = {"file_name": image} if isinstance(image, str) else dict(image)
        file_name = info.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise ValueError(f"image needs a non-empty 'file_name', got {image!r}")
        if file_name in self._ids_by_file:
            raise ValueError(
                f"image {file_name!r} was already added (id {self._ids_by_file[file_name]}); "
                f"check `file_name in writer` before adding when resuming"
            )
        if rles is not None and len(rles) != len(detections):
            raise ValueError(f"{len(rles)} rles for {len(detections)} detections of {file_name!r}")
        if detections.masks is None and rles is None and len(detections):
            raise ValueError(
                f"COCO instance segmentation needs masks, but the detections of {file_name!r} "
                f"have none: run the segment step (Pipeline.segment) first"
            )
        h, w = detections.image_size
        for key, value in (("height", h), ("width", w)):
            if key in info and int(info[key]) != value:
                raise ValueError(
                    f"image {file_name!r}: {key} {info[key]} disagrees with the detections' "
                    f"image_size {detections.image_size}"
                )
        if "id" in info:
            if image_id is not None and int(info["id"]) != image_id:
                raise ValueError(f"image {file_name!r}: two ids given ({info['id']}, {image_id})")
            image_id = int(info.pop("id"))
        if image_id is None:
            image_id = self._max_id + 1
        elif image_id in self._image_ids:
            raise ValueError(f"image id {image_id} is already used")
        record = {"id": int(image_id), "file_name": file_name, "height": h, "width": w}
        record.update({k: v for k, v in info.items() if k not in record})

        annotations = self._annotations_for(int(image_id), detections, rles)
        self._images.append(record)
        self._annotations.extend(annotations)
        self._ids_by_file[file_name] = int(image_id)
        self._image_ids.add(int(image_id))
        self._max_id = max(self._max_id, int(image_id))
        return int(image_id)

    def _annotations_for(
        self, image_id: int, det: Detections, rles: Sequence[Mapping[str, Any]] | None
    ) -> list[dict[str, Any]]:
        if len(det) == 0:
            return []
        if rles is not None:  # encoded once, upstream: read area and box from the runs
            segmentations = [{"size": list(r["size"]), "counts": r["counts"]} for r in rles]
            areas = rle_area(segmentations)
        else:
            assert det.masks is not None
            areas = mask_area(det.masks)
        keep = np.ones(len(det), dtype=bool)
        unknown = det.class_id < 0
        if self.unknown == "drop":
            self.dropped_unknown += int(unknown.sum())
            keep &= ~unknown
        empty = keep & (areas == 0)
        self.dropped_empty += int(empty.sum())
        keep &= areas > 0
        if (det.class_id[keep] >= len(self.classes)).any():
            bad = sorted(set(det.class_id[keep][det.class_id[keep] >= len(self.classes)].tolist()))
            raise ValueError(
                f"class_id {bad} out of range for {len(self.classes)} classes {self.classes}; "
                f"run the label step with this class list first"
            )
        idx = np.flatnonzero(keep)
        if rles is not None:
            boxes = xyxy_to_xywh(rles_to_xyxy([segmentations[i] for i in idx]))
        else:
            boxes = xyxy_to_xywh(masks_to_xyxy(det.masks[idx]))
        review = det.data.get("needs_review")
        out = []
        for k, i in enumerate(idx):
            cid = int(det.class_id[i])
            ann: dict[str, Any] = {
                "id": len(self._annotations) + len(out) + 1,
                "image_id": image_id,
                "category_id": cid + 1 if cid >= 0 else len(self.classes) + 1,
                "segmentation": segmentations[i] if rles is not None else mask_to_rle(det.masks[i]),
                "area": int(areas[i]),
                "bbox": [float(v) for v in boxes[k]],
                "iscrowd": 0,
                "score": round(float(det.scores[i]), 6),
                "phrase": det.phrases[i],
            }
            if det.mask_scores is not None:
                ann["mask_score"] = round(float(det.mask_scores[i]), 6)
            if review is not None:
                ann["needs_review"] = bool(review[i])
            out.append(ann)
        return out

    # ------------------------------------------------------------------ output
    def to_dict(self, *, scores: bool = True) -> dict[str, Any]:
        """The COCO dict. ``scores=False`` leaves out ``score`` (for ground-truth files)."""
        anns = self._annotations
        if not scores:
            anns = [{k: v for k, v in a.items() if k != "score"} for a in anns]
        else:
            anns = [dict(a) for a in anns]
        return {
            "info": {
                "description": "instance masks written by grounded-sam",
                "classes": list(self.classes),
                "unknown": self.unknown,
                "dropped_unknown": self.dropped_unknown,
                "dropped_empty": self.dropped_empty,
            },
            "images": [dict(im) for im in self._images],
            "annotations": anns,
            "categories": self.categories,
        }

    def write(self, path: str | Path, *, scores: bool = True, indent: int | None = None) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` atomically (temp file + rename)."""
        text = json.dumps(self.to_dict(scores=scores), indent=indent, ensure_ascii=False)
        return atomic_write_text(path, text)

    # ------------------------------------------------------------------ resuming
    @classmethod
    def from_dict(cls, coco: Mapping[str, Any]) -> CocoWriter:
        """Rebuild a writer from a dict that :meth:`to_dict` produced (to resume a run)."""
        info = coco.get("info") or {}
        unknown = info.get("unknown", "drop")
        cats = sorted(coco.get("categories", []), key=lambda c: c["id"])
        names = [c["name"] for c in cats]
        if unknown == "category" and names and names[-1] == UNKNOWN_CATEGORY:
            names = names[:-1]
        if [c["id"] for c in cats[: len(names)]] != list(range(1, len(names) + 1)):
            raise ValueError(
                "categories must have ids 1..K (as CocoWriter writes them) to resume; got "
                f"{[c['id'] for c in cats]}"
            )
        writer = cls(names, unknown=unknown)
        writer.dropped_unknown = int(info.get("dropped_unknown", 0))
        writer.dropped_empty = int(info.get("dropped_empty", 0))
        writer._images = [dict(im) for im in coco.get("images", [])]
        writer._annotations = [dict(a) for a in coco.get("annotations", [])]
        writer._ids_by_file = {im["file_name"]: int(im["id"]) for im in writer._images}
        writer._image_ids = set(writer._ids_by_file.values())
        writer._max_id = max(writer._image_ids, default=0)
        return writer

    @classmethod
    def load(cls, path: str | Path) -> CocoWriter:
        """Rebuild a writer from a JSON file that :meth:`write` produced."""
        return cls.from_dict(load_coco(path))


def load_coco(source: str | Path | Mapping[str, Any] | CocoWriter) -> dict[str, Any]:
    """A COCO dict from a JSON path, a dict (returned as a shallow copy) or a :class:`CocoWriter`.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is not JSON or not a COCO dict (no ``images``).
    """
    if isinstance(source, CocoWriter):
        return source.to_dict()
    if isinstance(source, Mapping):
        coco = dict(source)
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"COCO file not found: {path}")
        try:
            coco = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from e
        if not isinstance(coco, dict):
            raise ValueError(f"{path} holds a JSON {type(coco).__name__}, not a COCO dict")
    if "images" not in coco:
        raise ValueError(
            "not a COCO dataset dict: it has no 'images' list (a bare list of results is "
            "accepted only as predictions by grounded_sam.evaluation)"
        )
    return coco


def detections_from_coco(
    source: str | Path | Mapping[str, Any] | CocoWriter, file_name: str
) -> Detections:
    """The detections of one image of a COCO file, e.g. to review or visualise an export.

    ``class_id`` is the category's 0-based position among the categories sorted by id (so
    it indexes the class list of a :class:`CocoWriter` file; an ``"unknown"`` category of
    ``unknown="category"`` maps back to -1). ``xyxy`` comes from ``bbox``; masks are decoded
    from RLE segmentations (polygon segmentations are not supported: ``masks`` is None then).
    ``score`` defaults to 1.0 (ground truth); ``needs_review`` is kept in ``data`` when present.
    """
    coco = load_coco(source)
    images = [im for im in coco["images"] if im["file_name"] == file_name]
    if not images:
        raise KeyError(f"image {file_name!r} is not in the COCO file")
    image = images[0]
    h, w = int(image["height"]), int(image["width"])
    cats = sorted(coco.get("categories", []), key=lambda c: c["id"])
    info = coco.get("info") or {}
    position = {c["id"]: i for i, c in enumerate(cats)}
    if info.get("unknown") == "category" and cats and cats[-1]["name"] == UNKNOWN_CATEGORY:
        position[cats[-1]["id"]] = -1
    anns = [a for a in coco.get("annotations", []) if a["image_id"] == image["id"]]
    if not anns:
        return Detections.empty((h, w))
    rle = all(isinstance(a.get("segmentation"), dict) for a in anns)
    data: dict[str, Any] = {}
    if all("needs_review" in a for a in anns):
        data["needs_review"] = np.array([bool(a["needs_review"]) for a in anns])
    return Detections(
        xyxy=xywh_to_xyxy(np.array([a["bbox"] for a in anns], dtype=np.float64)),
        scores=np.array([a.get("score", 1.0) for a in anns], dtype=np.float32),
        phrases=[str(a.get("phrase", "")) for a in anns],
        class_id=np.array([position.get(a["category_id"], -1) for a in anns], dtype=np.int64),
        masks=np.stack([rle_to_mask(a["segmentation"]) for a in anns]) if rle else None,
        mask_scores=(
            np.array([a["mask_score"] for a in anns], np.float32)
            if all("mask_score" in a for a in anns)
            else None
        ),
        image_size=(h, w),
        data=data,
    )
