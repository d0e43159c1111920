"""``Detections``: the one value type that crosses every seam of the package."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from grounded_sam.masks import mask_to_rle, rle_to_mask


def _shape_error(name: str, expected: str, actual: Any) -> ValueError:
    return ValueError(f"Detections.{name}: expected {expected}, got {actual}")


@dataclass(frozen=True, eq=False)
class Detections:
    """N detections on one image.

    Attributes:
        xyxy: float32 (N, 4), pixels of the original image, (x1, y1, x2, y2), x1 <= x2, y1 <= y2.
        scores: float32 (N,), detector confidence (in [0, 1] for the detectors of this package).
        phrases: list[str] of length N, the text each detection matched ("" when none).
        class_id: int64 (N,), index into the prompt's classes; -1 when it maps to no class.
        masks: bool (N, H, W) at the original image size, or None before segmentation.
        mask_scores: float32 (N,), SAM's predicted IoU of each mask, or None.
        image_size: (H, W) of the original image.
        data: extra per-detection values, each a numpy array or list of length N
            (e.g. ``"stability_score"``, ``"class_name"``, ``"needs_review"``). They are sliced,
            concatenated and serialised with the rest.

    Index like numpy: ``d[0]``, ``d[1:3]``, ``d[d.scores > 0.5]``, ``d[[2, 0]]``; every form
    returns a ``Detections``. Instances are immutable; use :meth:`replace` to change fields.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    phrases: list[str]
    class_id: np.ndarray
    masks: np.ndarray | None = None
    mask_scores: np.ndarray | None = None
    image_size: tuple[int, int] = (0, 0)
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32)
        if xyxy.ndim == 1 and xyxy.size == 0:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise _shape_error("xyxy", "shape (N, 4)", xyxy.shape)
        n = len(xyxy)
        if not np.isfinite(xyxy).all():
            raise ValueError("Detections.xyxy: boxes must be finite (found NaN or inf)")
        if (xyxy[:, 2] < xyxy[:, 0]).any() or (xyxy[:, 3] < xyxy[:, 1]).any():
            bad = np.flatnonzero((xyxy[:, 2] < xyxy[:, 0]) | (xyxy[:, 3] < xyxy[:, 1]))
            raise ValueError(
                f"Detections.xyxy: boxes must be (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2; "
                f"rows {bad[:5].tolist()} are not (is this xywh or cxcywh? convert with "
                f"grounded_sam.geometry first)"
            )

        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if scores.shape != (n,):
            raise _shape_error("scores", f"shape ({n},)", scores.shape)

        phrases = [str(p) for p in self.phrases]
        if len(phrases) != n:
            raise _shape_error("phrases", f"{n} strings", f"{len(phrases)}")

        if self.class_id is None:
            raise ValueError("Detections.class_id must be an int array; use -1 for 'no class'")
        class_id = np.asarray(self.class_id)
        if class_id.dtype.kind not in "biu" and not (
            class_id.dtype.kind == "f" and np.all(np.mod(class_id, 1) == 0)
        ):
            raise _shape_error(
                "class_id",
                "integers (-1 for 'no class')",
                f"{class_id.dtype} values {class_id.reshape(-1)[:5].tolist()}",
            )
        class_id = class_id.astype(np.int64).reshape(-1)
        if class_id.shape != (n,):
            raise _shape_error("class_id", f"shape ({n},)", class_id.shape)
        if (class_id < -1).any():
            raise ValueError("Detections.class_id: values must be >= -1 (-1 means 'no class')")

        try:
            h, w = (int(v) for v in self.image_size)
        except (TypeError, ValueError):
            raise _shape_error("image_size", "(H, W)", self.image_size) from None
        if h < 0 or w < 0:
            raise _shape_error("image_size", "(H, W) with H, W >= 0", self.image_size)

        masks = self.masks
        if masks is not None:
            masks = np.asarray(masks)
            if masks.dtype != bool:
                raise _shape_error("masks", "dtype bool", masks.dtype)
            if masks.shape != (n, h, w):
                raise _shape_error("masks", f"shape ({n}, {h}, {w})", masks.shape)

        mask_scores = self.mask_scores
        if mask_scores is not None:
            mask_scores = np.asarray(mask_scores, dtype=np.float32).reshape(-1)
            if mask_scores.shape != (n,):
                raise _shape_error("mask_scores", f"shape ({n},)", mask_scores.shape)

        data: dict[str, Any] = {}
        for key, value in dict(self.data).items():
            if isinstance(value, str | bytes):  # list("abc") would silently split it
                raise _shape_error(f"data[{key!r}]", f"a list or array of length {n}", "a string")
            if isinstance(value, np.ndarray):
                if value.ndim == 0:
                    raise _shape_error(f"data[{key!r}]", f"an array of length {n}", "a 0-d array")
            else:
                try:
                    value = list(value)
                except TypeError:
                    raise _shape_error(
                        f"data[{key!r}]", f"a list or array of length {n}", type(value).__name__
                    ) from None
            if len(value) != n:
                raise _shape_error(f"data[{key!r}]", f"length {n}", len(value))
            data[key] = value

        set_ = object.__setattr__
        set_(self, "xyxy", xyxy)
        set_(self, "scores", scores)
        set_(self, "phrases", phrases)
        set_(self, "class_id", class_id)
        set_(self, "masks", masks)
        set_(self, "mask_scores", mask_scores)
        set_(self, "image_size", (h, w))
        set_(self, "data", data)

    # ------------------------------------------------------------------ construction
    @classmethod
    def empty(cls, image_size: tuple[int, int] = (0, 0), with_masks: bool = False) -> Detections:
        """Zero detections on an image of ``(H, W)``; ``with_masks`` gives masks of shape (0, H, W)."""
        h, w = image_size
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            scores=np.zeros(0, np.float32),
            phrases=[],
            class_id=np.zeros(0, np.int64),
            masks=np.zeros((0, h, w), bool) if with_masks else None,
            mask_scores=np.zeros(0, np.float32) if with_masks else None,
            image_size=(h, w),
        )

    @classmethod
    def concatenate(cls, items: Sequence[Detections]) -> Detections:
        """Join detections of the same image.

        Masks, mask_scores and data keys must be all-or-none among the non-empty items; an
        empty ``Detections`` joins anything (e.g. ``Detections.empty(size)`` as a start value).
        """
        items = list(items)
        if not items:
            raise ValueError(
                "Detections.concatenate needs at least one Detections (for image_size)"
            )
        sizes = {d.image_size for d in items}
        if len(sizes) != 1:
            raise ValueError(f"cannot concatenate detections of different images: sizes {sizes}")
        (size,) = sizes
        nonempty = [d for d in items if len(d)]
        strict = bool(nonempty)  # all empty: keep only what every item has, never fail
        items = nonempty or items

        def all_or_none(attr: str) -> bool:
            present = [getattr(d, attr) is not None for d in items]
            if strict and any(present) and not all(present):
                raise ValueError(f"cannot concatenate: some detections have {attr}, some do not")
            return all(present)

        keys = [set(d.data) for d in items]
        if strict and any(k != keys[0] for k in keys):
            raise ValueError(f"cannot concatenate: data keys differ {keys}")
        keys[0] = set.intersection(*keys)
        data: dict[str, Any] = {}
        for key in keys[0]:
            values = [d.data[key] for d in items]
            if all(isinstance(v, np.ndarray) for v in values):
                data[key] = np.concatenate(values)
            else:
                data[key] = [x for v in values for x in v]
        return cls(
            xyxy=np.concatenate([d.xyxy for d in items]),
            scores=np.concatenate([d.scores for d in items]),
            phrases=[p for d in items for p in d.phrases],
            class_id=np.concatenate([d.class_id for d in items]),
            masks=np.concatenate([d.masks for d in items]) if all_or_none("masks") else None,
            mask_scores=(
                np.concatenate([d.mask_scores for d in items])
                if all_or_none("mask_scores")
                else None
            ),
            image_size=size,
            data=data,
        )

    def replace(self, **changes: Any) -> Detections:
        """A copy with some fields replaced (validated again)."""
        fields = {
            "xyxy": self.xyxy,
            "scores": self.scores,
            "phrases": self.phrases,
            "class_id": self.class_id,
            "masks": self.masks,
            "mask_scores": self.mask_scores,
            "image_size": self.image_size,
            "data": self.data,
        }
        unknown = set(changes) - set(fields)
        if unknown:
            raise TypeError(f"Detections has no field(s) {sorted(unknown)}")
        fields.update(changes)
        return Detections(**fields)

    # ------------------------------------------------------------------ selection
    def top_k(self, k: int | None) -> Detections:
        """The ``k`` highest-scoring detections, best first (equal scores keep their order);
        all of them, best first, when ``k`` is None."""
        order = np.argsort(-self.scores, kind="stable")
        return self[order if k is None else order[: int(k)]]

    def with_nms(self, iou_threshold: float, *, class_agnostic: bool = False) -> Detections:
        """Non-maximum suppression on ``xyxy`` (torchvision's kernel, ties broken as in SAM).

        A box suppresses the lower-scored boxes of its own ``class_id`` (of any class with
        ``class_agnostic``) that overlap it by an IoU above ``iou_threshold`` (in [0, 1]).
        Returns the kept detections, best score first.
        """
        from grounded_sam.geometry import nms

        groups = None if class_agnostic else self.class_id
        return self[nms(self.xyxy, self.scores, iou_threshold, groups)]

    def with_min_mask_area(self, min_area: int) -> Detections:
        """The detections whose mask covers at least ``min_area`` pixels (all when
        ``min_area`` <= 0 or there are no masks)."""
        from grounded_sam.masks import mask_area

        if min_area <= 0 or self.masks is None or not len(self):
            return self
        return self[mask_area(self.masks) >= min_area]

    def with_mask_boxes(self) -> Detections:
        """``xyxy`` replaced by the tight pixel-edge box of each mask; a detection whose mask
        is empty keeps its box. Without masks, the detections as they are."""
        from grounded_sam.masks import masks_to_xyxy

        if self.masks is None or not len(self):
            return self
        tight = masks_to_xyxy(self.masks)
        empty = ~self.masks.reshape(len(self), -1).any(axis=1)
        tight[empty] = self.xyxy[empty]
        return self.replace(xyxy=tight)

    # ------------------------------------------------------------------ container protocol
    def __len__(self) -> int:
        return len(self.xyxy)

    def __iter__(self) -> Iterator[Detections]:
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index: int | slice | np.ndarray | Sequence[int]) -> Detections:
        n = len(self)
        if isinstance(index, bool | np.bool_):
            raise IndexError("cannot index Detections with a bool scalar; use a bool array (N,)")
        if isinstance(index, int | np.integer):
            i = int(index)
            if not -n <= i < n:
                raise IndexError(f"detection index {i} out of range for {n} detections")
            idx = np.array([i % n], dtype=np.int64)
        elif isinstance(index, slice):
            idx = np.arange(n)[index]
        else:
            arr = np.asarray(index)
            if arr.dtype == bool:
                if arr.shape != (n,):
                    raise IndexError(f"boolean index must have shape ({n},), got {arr.shape}")
                idx = np.flatnonzero(arr)
            elif arr.size == 0:
                idx = np.zeros(0, dtype=np.int64)
            elif np.issubdtype(arr.dtype, np.integer):
                idx = arr.reshape(-1).astype(np.int64)
                if ((idx < -n) | (idx >= n)).any():
                    raise IndexError(f"index out of range for {n} detections: {idx.tolist()}")
            else:
                raise IndexError(f"cannot index Detections with {arr.dtype} array")

        def take(v: Any) -> Any:
            if isinstance(v, np.ndarray):
                return v[idx]
            return [v[i] for i in idx]

        return Detections(
            xyxy=self.xyxy[idx],
            scores=self.scores[idx],
            phrases=take(self.phrases),
            class_id=self.class_id[idx],
            masks=None if self.masks is None else self.masks[idx],
            mask_scores=None if self.mask_scores is None else self.mask_scores[idx],
            image_size=self.image_size,
            data={k: take(v) for k, v in self.data.items()},
        )

    def __repr__(self) -> str:
        masks = "None" if self.masks is None else f"bool{tuple(self.masks.shape)}"
        return (
            f"Detections(n={len(self)}, image_size={self.image_size}, masks={masks}, "
            f"phrases={self.phrases[:5]}{'…' if len(self) > 5 else ''})"
        )

    # ------------------------------------------------------------------ serialisation
    def to_supervision(self) -> Any:
        """These detections as an ``sv.Detections`` (Roboflow supervision, an optional
        dependency); see :mod:`grounded_sam.interop.supervision` for where each field goes."""
        from grounded_sam.interop.supervision import to_supervision

        return to_supervision(self)

    @classmethod
    def from_supervision(
        cls, sv_detections: Any, image_size: tuple[int, int] | None = None
    ) -> Detections:
        """Detections from an ``sv.Detections``
        (:func:`grounded_sam.interop.supervision.from_supervision`)."""
        from grounded_sam.interop.supervision import from_supervision

        return from_supervision(sv_detections, image_size)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: ``{"image_size": [H, W], "detections": [...], "fields": {...}}``.

        Each detection has ``xyxy`` (pixels), ``score``, ``phrase``, ``class_id`` and, when
        present, ``mask`` as COCO compressed RLE (``{"size": [H, W], "counts": str}``),
        ``mask_score`` and the ``data`` entries (numpy scalars become Python numbers).
        ``fields`` records which optional fields exist and each data entry's dtype and shape,
        so :meth:`from_dict` restores them exactly, also when there are no detections.
        """
        dets = []
        for i in range(len(self)):
            item: dict[str, Any] = {
                "xyxy": [float(v) for v in self.xyxy[i]],
                "score": float(self.scores[i]),
                "phrase": self.phrases[i],
                "class_id": int(self.class_id[i]),
            }
            if self.masks is not None:
                item["mask"] = mask_to_rle(self.masks[i])
            if self.mask_scores is not None:
                item["mask_score"] = float(self.mask_scores[i])
            if self.data:
                item["data"] = {k: _to_jsonable(v[i]) for k, v in self.data.items()}
            dets.append(item)
        fields = {
            "masks": self.masks is not None,
            "mask_scores": self.mask_scores is not None,
            "data": {
                k: (
                    {"type": "array", "dtype": v.dtype.str, "shape": list(v.shape[1:])}
                    if isinstance(v, np.ndarray)
                    else {"type": "list"}
                )
                for k, v in self.data.items()
            },
        }
        return {"image_size": list(self.image_size), "detections": dets, "fields": fields}

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, masks: bool = True) -> Detections:
        """Inverse of :meth:`to_dict` (also reads dicts written without ``fields``).

        ``masks=False`` leaves ``masks`` None and decodes nothing (the RLEs stay in ``d``, e.g.
        for a COCO writer that takes them as they are).
        """
        size = tuple(int(v) for v in d["image_size"])
        items = d["detections"]
        n = len(items)
        fields = d.get("fields")
        if fields is None:  # older output: infer the optional fields from the detections
            if not items:
                return cls.empty(size)
            has_masks = all("mask" in it for it in items)
            has_ms = all("mask_score" in it for it in items)
            specs: dict[str, Any] = {k: None for k in items[0].get("data", {})}
        else:
            has_masks, has_ms = bool(fields["masks"]), bool(fields["mask_scores"])
            specs = dict(fields.get("data", {}))
        data: dict[str, Any] = {}
        for k, spec in specs.items():
            values = [it["data"][k] for it in items]
            if spec is None:
                numeric = all(isinstance(v, bool | int | float) for v in values)
                data[k] = np.asarray(values) if numeric else values
            elif spec["type"] == "array":
                shape = (n, *(int(v) for v in spec["shape"]))
                data[k] = np.array(values, dtype=np.dtype(spec["dtype"])).reshape(shape)
            else:
                data[k] = values
        h, w = size
        return cls(
            xyxy=np.array([it["xyxy"] for it in items], dtype=np.float32).reshape(n, 4),
            scores=np.array([it["score"] for it in items], dtype=np.float32),
            phrases=[it["phrase"] for it in items],
            class_id=np.array([it["class_id"] for it in items], dtype=np.int64),
            masks=(
                np.stack([rle_to_mask(it["mask"]) for it in items])
                if masks and has_masks and items
                else (np.zeros((0, h, w), bool) if masks and has_masks else None)
            ),
            mask_scores=(
                np.array([it["mask_score"] for it in items], np.float32) if has_ms else None
            ),
            image_size=size,
            data=data,
        )


def _to_jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v
