"""Overlays for the web demo and notebooks: masks, boxes, labels and clicked points.

Annotators are small objects with one method, ``annotate(image, ...)``, that take an RGB uint8
(H, W, 3) image and return a new RGB uint8 (H, W, 3) array; the input is never modified.
:func:`annotate` composes the three usual ones. Only numpy and PIL are used (no torch, no cv2).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from grounded_sam.types import Detections

Color = tuple[int, int, int]

# 20 colours that stay distinguishable on photographs (Tableau-like, saturated).
PALETTE: tuple[Color, ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (220, 190, 255),
    (170, 110, 40),
    (255, 225, 25),
    (128, 0, 0),
    (170, 255, 195),
    (128, 128, 0),
    (255, 215, 180),
    (0, 0, 128),
    (128, 128, 128),
    (255, 255, 255),
)


def as_rgb(image: Any) -> np.ndarray:
    """RGB uint8 (H, W, 3) view or copy of ``image``: an ndarray (H, W), (H, W, 3|4) or a PIL image.

    Float arrays are accepted when their values lie in [0, 1] or [0, 255].
    """
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    arr = arr[:, :, :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return arr


def color_key(detections: Detections, i: int) -> int:
    """Colour index of detection ``i``: its class when it has one, else its phrase, else ``i``.

    Detections of one class (or one phrase) share a colour; unlabelled masks (the "everything"
    mode) each get their own.
    """
    cid = int(detections.class_id[i])
    if cid >= 0:
        return cid
    phrase = detections.phrases[i].strip()
    if phrase:
        return zlib.crc32(phrase.encode("utf-8"))
    return i


def color_of(key: int, palette: Sequence[Color] = PALETTE) -> Color:
    """The palette colour for an integer key (wraps around)."""
    return tuple(palette[key % len(palette)])  # type: ignore[return-value]


def needs_review(detections: Detections) -> np.ndarray:
    """bool (N,): the label step's review flags (``data["needs_review"]``), all False if absent."""
    flags = detections.data.get("needs_review")
    if flags is None:
        return np.zeros(len(detections), dtype=bool)
    return np.asarray(flags, dtype=bool).reshape(-1)


def detection_names(detections: Detections) -> list[str]:
    """The name shown for each detection: ``data["class_name"]`` when labelled, else the phrase."""
    names = detections.data.get("class_name")
    out = []
    for i in range(len(detections)):
        name = str(names[i]) if names is not None and names[i] not in (None, "") else ""
        out.append(name or detections.phrases[i] or f"#{i}")
    return out


def detection_labels(detections: Detections) -> list[str]:
    """Label text per detection: ``"cat 0.87"``, with ``" ?"`` appended when it needs review."""
    review = needs_review(detections)
    return [
        f"{name} {float(score):.2f}" + (" ?" if review[i] else "")
        for i, (name, score) in enumerate(
            zip(detection_names(detections), detections.scores, strict=True)
        )
    ]


def _check_size(image: np.ndarray, detections: Detections) -> None:
    if detections.image_size != image.shape[:2] and len(detections):
        raise ValueError(
            f"detections are for an image of size {detections.image_size} (H, W) but the image "
            f"is {image.shape[:2]}; draw on the image the detections were computed on"
        )


def _outline(mask: np.ndarray) -> np.ndarray:
    """bool (H, W): the pixels of ``mask`` that touch a pixel outside it (4-neighbourhood)."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


@dataclass(frozen=True)
class MaskAnnotator:
    """Fills each mask with its colour at ``alpha`` opacity and draws its outline.

    Large masks are drawn first so that small ones stay visible on top.
    """

    alpha: float = 0.5
    outline: bool = True
    palette: tuple[Color, ...] = PALETTE

    def annotate(self, image: Any, detections: Detections) -> np.ndarray:
        """RGB uint8 (H, W, 3) ``image`` with ``detections.masks`` (bool (N, H, W)) drawn over it."""
        scene = as_rgb(image)
        _check_size(scene, detections)
        if detections.masks is None or len(detections) == 0:
            return scene.copy()
        out = scene.astype(np.float32)
        areas = detections.masks.reshape(len(detections), -1).sum(axis=1)
        for i in np.argsort(-areas, kind="stable"):
            mask = detections.masks[i]
            color = np.array(color_of(color_key(detections, int(i)), self.palette), np.float32)
            out[mask] = out[mask] * (1.0 - self.alpha) + color * self.alpha
            if self.outline:
                out[_outline(mask)] = color
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class BoxAnnotator:
    """Draws each xyxy box (pixels) as a rectangle; boxes that need review are drawn dashed."""

    thickness: int = 2
    palette: tuple[Color, ...] = PALETTE

    def annotate(self, image: Any, detections: Detections) -> np.ndarray:
        """RGB uint8 (H, W, 3) ``image`` with ``detections.xyxy`` drawn over it."""
        scene = as_rgb(image)
        _check_size(scene, detections)
        pil = Image.fromarray(scene)
        draw = ImageDraw.Draw(pil)
        review = needs_review(detections)
        for i, (x1, y1, x2, y2) in enumerate(detections.xyxy.tolist()):
            color = color_of(color_key(detections, i), self.palette)
            # xyxy are pixel edges; PIL's rectangle includes its end point.
            box = (x1, y1, max(x1, x2 - 1), max(y1, y2 - 1))
            if review[i]:
                _dashed_rectangle(draw, box, color, self.thickness)
            else:
                draw.rectangle(box, outline=color, width=self.thickness)
        return np.array(pil)


def _dashed_rectangle(
    draw: ImageDraw.ImageDraw, box: tuple[float, ...], color: Color, width: int, dash: int = 6
) -> None:
    x1, y1, x2, y2 = box
    for a, b, horizontal, fixed in ((x1, x2, True, y1), (x1, x2, True, y2)) + (
        (y1, y2, False, x1),
        (y1, y2, False, x2),
    ):
        start = a
        while start < b:
            end = min(start + dash, b)
            if horizontal:
                draw.line([(start, fixed), (end, fixed)], fill=color, width=width)
            else:
                draw.line([(fixed, start), (fixed, end)], fill=color, width=width)
            start += 2 * dash


@dataclass(frozen=True)
class LabelAnnotator:
    """Writes a label (default: :func:`detection_labels`) above each box's top-left corner.

    ``font_size`` None scales the text with the image (about 1/40 of its short side, >= 11 px).
    """

    font_size: int | None = None
    palette: tuple[Color, ...] = PALETTE

    def annotate(
        self, image: Any, detections: Detections, labels: Sequence[str] | None = None
    ) -> np.ndarray:
        """RGB uint8 (H, W, 3) ``image`` with one text label per detection drawn over it."""
        scene = as_rgb(image)
        _check_size(scene, detections)
        texts = detection_labels(detections) if labels is None else [str(t) for t in labels]
        if len(texts) != len(detections):
            raise ValueError(f"got {len(texts)} labels for {len(detections)} detections")
        h, w = scene.shape[:2]
        size = self.font_size or max(11, min(h, w) // 40)
        font = ImageFont.load_default(size=size)
        pil = Image.fromarray(scene)
        draw = ImageDraw.Draw(pil)
        pad = max(1, size // 5)
        for i, text in enumerate(texts):
            x1, y1 = (float(v) for v in detections.xyxy[i, :2])
            color = color_of(color_key(detections, i), self.palette)
            left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
            tw, th = right - left + 2 * pad, bottom - top + 2 * pad
            # above the box when there is room, else just inside it; never off the image
            ty = y1 - th if y1 - th >= 0 else y1
            tx = min(max(0.0, x1), max(0.0, w - tw))
            ty = min(max(0.0, ty), max(0.0, h - th))
            draw.rectangle((tx, ty, tx + tw, ty + th), fill=color)
            luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
            ink = (0, 0, 0) if luminance > 150 else (255, 255, 255)
            draw.text((tx + pad - left, ty + pad - top), text, fill=ink, font=font)
        return np.array(pil)


@dataclass(frozen=True)
class PointAnnotator:
    """Draws clicked prompt points: foreground (label 1) green, background (label 0) red."""

    radius: int | None = None

    def annotate(self, image: Any, points_xy: Any, labels: Any) -> np.ndarray:
        """``points_xy``: float (K, 2) (x, y) pixels; ``labels``: int (K,), 1 = fg, 0 = bg."""
        scene = as_rgb(image)
        points = np.asarray(points_xy, dtype=np.float32).reshape(-1, 2)
        flags = np.asarray(labels).reshape(-1)
        if len(points) != len(flags):
            raise ValueError(f"got {len(points)} points but {len(flags)} labels")
        r = self.radius or max(4, min(scene.shape[:2]) // 80)
        pil = Image.fromarray(scene)
        draw = ImageDraw.Draw(pil)
        for (x, y), flag in zip(points.tolist(), flags.tolist(), strict=True):
            fill = (40, 200, 60) if int(flag) == 1 else (220, 40, 40)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill, outline=(255, 255, 255), width=2)
        return np.array(pil)


def annotate(
    image: Any,
    detections: Detections,
    *,
    masks: bool = True,
    boxes: bool = True,
    labels: bool = True,
    alpha: float = 0.5,
) -> np.ndarray:
    """``image`` (RGB uint8 (H, W, 3) or PIL) with masks, boxes and labels drawn: uint8 (H, W, 3)."""
    scene = as_rgb(image)
    if masks:
        scene = MaskAnnotator(alpha=alpha).annotate(scene, detections)
    if boxes:
        scene = BoxAnnotator(thickness=max(2, min(scene.shape[:2]) // 300)).annotate(
            scene, detections
        )
    if labels:
        scene = LabelAnnotator().annotate(scene, detections)
    return scene
