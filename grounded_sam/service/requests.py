"""Per-request functions of the demo and its API: an image and options in, ``Detections`` out.

Each function takes the shared :class:`~grounded_sam.service.models.ModelManager` and plain
values; nothing about a request is stored anywhere but in what it returns. The interactive
mode's per-session state is :class:`ClickState`, an immutable value the page keeps.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from grounded_sam.service.limits import DEFAULT_LIMITS, Limits
from grounded_sam.service.models import CLIP, GROUNDING_DINO, ModelManager
from grounded_sam.service.options import (
    check_amg_options,
    check_amg_work,
    check_clicks,
    check_prompt,
)
from grounded_sam.types import Detections

Progress = Callable[..., Any]  # called as progress(fraction in [0, 1], desc="...")


def _noop_progress(fraction: float, desc: str | None = None) -> None:
    return None


def detect_segment(
    manager: ModelManager,
    image: np.ndarray,
    prompt: str,
    *,
    detector: str = GROUNDING_DINO,
    sam: str | None = None,
    box_threshold: float | None = None,
    text_threshold: float | None = None,
    clip_threshold: float | None = None,
    progress: Progress = _noop_progress,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[Detections, list[str]]:
    """Text prompt -> labelled masks: detect, segment, label.

    Args:
        image: RGB uint8 (H, W, 3) (or anything :func:`grounded_sam.load_image` accepts).
        prompt: ``"cat . dog"``; its classes are the label step's class list.
        detector: ``"grounding_dino"`` or ``"clip"``.
        box_threshold / text_threshold: Grounding DINO's thresholds (None: the model's).
        clip_threshold: the CLIP detector's class-probability threshold (None: its default).
        limits: the prompt's length and class count, the image's pixels and the number of
            detections segmented (the ``limits.max_boxes`` best) are bounded by it.

    Every option is checked before any model runs (thresholds finite and in [0, 1]).

    Returns:
        ``(detections, classes)``: boxes xyxy float32 (N, 4) pixels, masks bool (N, H, W),
        ``class_id`` into ``classes``, review flags in ``data``.
    """
    from grounded_sam.image import as_rgb
    from grounded_sam.pipeline import Pipeline

    classes = check_prompt(prompt, limits)
    image = as_rgb(image, max_pixels=limits.max_pixels)
    progress(0.05, desc="Loading models (first use only)")
    if detector == CLIP:
        det = manager.detector(CLIP, sam, score_threshold=clip_threshold, top_k=limits.max_boxes)
    else:
        det = manager.detector(
            detector,
            sam,
            box_threshold=box_threshold,
            text_threshold=text_threshold,
            top_k=limits.max_boxes,
        )
    if detector == CLIP:  # it proposes regions with SAM's automatic masks: bounded the same way
        amg = det.amg_options
        check_amg_work(
            amg.get("points_per_side", 32), amg.get("crop_n_layers", 0), image.shape[:2], limits
        )
    pipe = Pipeline(det, manager.segmenter(sam))
    progress(0.2, desc="Detecting")
    boxes = pipe.detect(image, prompt)
    progress(0.6, desc=f"Segmenting {len(boxes)} boxes")
    masks = pipe.segment(image, boxes)
    progress(0.9, desc="Labelling")
    return pipe.label(masks, classes, prompt=prompt), classes


def segment_points(
    manager: ModelManager,
    image: np.ndarray,
    points_xy: Sequence[Sequence[float]] | np.ndarray = (),
    labels: Sequence[int] | np.ndarray = (),
    box: Sequence[float] | None = None,
    *,
    mask_input: np.ndarray | None = None,
    sam: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[Detections, np.ndarray]:
    """One mask from clicks: ``points_xy`` float (K, 2) (x, y) pixels, ``labels`` (K,) 1 = fg,
    0 = bg, an optional ``box`` xyxy pixels and the previous call's low-res logits.

    Returns ``(detections, low_res_logits)``: one detection (box = the mask's tight box, score
    = SAM's predicted IoU, phrase ``"object"``) and float32 (1, 256, 256) logits to pass back
    as ``mask_input`` with the next click. Points and the box are checked first (finite,
    inside the image, x1 < x2 and y1 < y2, labels 0 or 1, at most ``limits.max_points``).
    """
    from grounded_sam.image import as_rgb
    from grounded_sam.masks import masks_to_xyxy

    image = as_rgb(image, max_pixels=limits.max_pixels)
    pts, lab, box_arr = check_clicks(
        _as_list(points_xy), _as_list(labels), _as_list(box), image.shape[:2], limits
    )
    mask, score, logits = manager.segmenter(sam).segment_points(
        image, pts, lab, box=box_arr, mask_input=mask_input
    )
    masks = np.asarray(mask, dtype=bool)[None]
    dets = Detections(
        xyxy=masks_to_xyxy(masks),
        scores=np.array([score], np.float32),
        phrases=["object"],
        class_id=np.zeros(1, np.int64),
        masks=masks,
        mask_scores=np.array([score], np.float32),
        image_size=image.shape[:2],
    )
    return dets, np.asarray(logits, dtype=np.float32)


def everything(
    manager: ModelManager,
    image: np.ndarray,
    *,
    sam: str | None = None,
    progress: Progress = _noop_progress,
    limits: Limits = DEFAULT_LIMITS,
    **amg_options: Any,
) -> Detections:
    """Automatic masks of everything in the image (SAM's grid of point prompts).

    The masks have no class (``class_id`` -1, phrase ``""``).

    ``amg_options`` override :attr:`ModelManager.default_amg_options` (``points_per_side``,
    ``pred_iou_thresh``, ``stability_score_thresh``, ``min_mask_region_area`` …); each is
    checked first, ``points_per_side`` and ``crop_n_layers`` against ``limits``.
    """
    from grounded_sam.image import as_rgb

    amg_options = check_amg_options(amg_options, limits)
    image = as_rgb(image, max_pixels=limits.max_pixels)
    options = {**manager.default_amg_options, **amg_options}
    check_amg_work(
        options.get("points_per_side", 32), options.get("crop_n_layers", 0), image.shape[:2], limits
    )
    progress(0.05, desc="Loading SAM (first use only)")
    segmenter = manager.segmenter(sam)
    progress(0.2, desc=f"Segmenting everything ({options.get('points_per_side')}² points)")
    return segmenter.generate(image, **options)


@dataclass(frozen=True)
class ClickState:
    """The interactive mode's state for one session (immutable; each click returns a new one).

    ``points``: (x, y) pixels; ``labels``: 1 = foreground, 0 = background; ``box``: xyxy
    pixels once two corners were clicked; ``corner``: the first corner of a box being drawn;
    ``logits``: float32 (1, 256, 256) low-res logits of the last mask (refined by the next
    click). Start a new state when the image or the SAM model changes.
    """

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    corner: tuple[float, float] | None = None
    logits: np.ndarray | None = field(default=None, compare=False, repr=False)

    def click(self, x: float, y: float, mode: str) -> ClickState:
        """Add a click: ``mode`` is ``"foreground"``, ``"background"`` or ``"box"``.

        In box mode the first click sets a corner and the second completes the box.
        """
        if mode == "box":
            if self.corner is None:
                return replace(self, corner=(float(x), float(y)))
            (x0, y0), (x1, y1) = self.corner, (float(x), float(y))
            box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            return replace(self, box=box, corner=None)
        if mode not in ("foreground", "background"):
            raise ValueError(f"unknown click mode {mode!r}: foreground, background or box")
        label = 1 if mode == "foreground" else 0
        return replace(
            self, points=(*self.points, (float(x), float(y))), labels=(*self.labels, label)
        )

    def with_logits(self, logits: np.ndarray) -> ClickState:
        """The same clicks with the last mask's low-res logits (the next click refines them)."""
        return replace(self, logits=logits)

    @property
    def ready(self) -> bool:
        """True when there is something to segment (a point or a finished box)."""
        return bool(self.points) or self.box is not None


def _as_list(value: Any) -> Any:
    """Arrays and tuples as lists (the checks take JSON-like values); None stays None."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    return list(value) if isinstance(value, tuple) else value
