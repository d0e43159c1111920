"""The detectors' declared options (see :mod:`grounded_sam.options`): one frozen dataclass and
one check per detector. Which model runs and its precision are construction settings, not
options: they cannot change per call."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from grounded_sam.options import Options
from grounded_sam.validation import check_int, check_unit

NMS_MODES = (None, "class", "agnostic")
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a cropped photo of a {}.",
    "a close-up photo of a {}.",
)
DEFAULT_BACKGROUND_PROMPTS: tuple[str, ...] = ("background", "a photo of nothing")


@dataclasses.dataclass(frozen=True)
class GroundingDinoOptions(Options):
    """:class:`~grounded_sam.GroundingDinoDetector`'s settings (its docstring says what each
    does). Thresholds are floats in [0, 1]; ``top_k`` an int >= 1 or None; ``nms`` one of
    None, ``"class"``, ``"agnostic"``."""

    box_threshold: float = 0.35
    text_threshold: float = 0.25
    nms: str | None = None
    nms_iou: float = 0.5
    top_k: int | None = None
    class_restricted: bool = False

    def check(self) -> dict[str, Any]:
        if self.nms not in NMS_MODES:
            raise ValueError(f"nms must be one of {NMS_MODES}, got {self.nms!r}")
        return {
            "box_threshold": check_unit("box_threshold", self.box_threshold),
            "text_threshold": check_unit("text_threshold", self.text_threshold),
            "nms_iou": check_unit("nms_iou", self.nms_iou),
            "top_k": None if self.top_k is None else check_int("top_k", self.top_k, low=1),
            "class_restricted": bool(self.class_restricted),
        }


@dataclasses.dataclass(frozen=True)
class ClipOptions(Options):
    """:class:`~grounded_sam.ClipMaskDetector`'s settings (its docstring says what each does).

    ``score_threshold`` and ``nms_threshold`` (or None) in [0, 1]; ``batch_size`` int >= 1;
    ``top_k`` int >= 0 or None; ``templates`` non-empty, each with ``{}``; ``amg_options``
    checked by :func:`~grounded_sam.segmenters.amg_options.check_amg_options`;
    ``background_fill`` ``"mean"``, an RGB tuple of 0..255 or None.
    """

    score_threshold: float = 0.3
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    background_prompts: tuple[str, ...] = DEFAULT_BACKGROUND_PROMPTS
    batch_size: int = 32
    nms_threshold: float | None = 0.5
    top_k: int | None = None
    keep_proposal_masks: bool = False
    amg_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    background_fill: str | tuple[int, int, int] | None = "mean"
    square_crops: bool = True
    logit_scale: float | None = None

    def check(self) -> dict[str, Any]:
        from grounded_sam.segmenters.amg_options import check_amg_options

        templates = tuple(self.templates)
        if not templates or any("{}" not in t for t in templates):
            raise ValueError(
                f"templates must be a non-empty list of strings with '{{}}' for the class "
                f"name, got {templates!r}"
            )
        nms = self.nms_threshold
        return {
            "score_threshold": check_unit("score_threshold", self.score_threshold),
            "templates": templates,
            "background_prompts": tuple(self.background_prompts),
            "batch_size": check_int("batch_size", self.batch_size, low=1),
            "nms_threshold": None if nms is None else check_unit("nms_threshold", nms),
            "top_k": None if self.top_k is None else check_int("top_k", self.top_k, low=0),
            "amg_options": check_amg_options(dict(self.amg_options or {})),
        }
