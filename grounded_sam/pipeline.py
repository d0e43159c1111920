"""``Pipeline``: detect -> segment -> label, each step ``Detections`` in, ``Detections`` out.

    pipe = gs.Pipeline(detector, segmenter, top_k=20)    # or Pipeline.from_registry(...)
    boxes = pipe.detect(image, "cup . knife", box_threshold=0.3)   # boxes, scores, phrases
    masks = pipe.segment(image, boxes[boxes.scores > 0.4])         # + masks, mask_scores
    final = pipe.label(masks, prompt="cup . knife")                # + class names, review flags

``pipe(image, prompt)`` runs the three on an image decoded once and embedded once (the
segmenter caches by content). Models are built by :mod:`grounded_sam.models.build`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from grounded_sam.classes import parse_classes
from grounded_sam.errors import PromptError
from grounded_sam.types import Detections

ImageLike = Any  # a path, bytes, PIL image or ndarray: whatever gs.load_image accepts
PromptLike = str | Sequence[str]  # "cat . dog" or ["cat", "dog"]


class Pipeline:
    """An open-vocabulary detector composed with SAM, and a label step.

    Args:
        detector: has ``detect(image, prompt) -> Detections`` (boxes in pixels of the
            original image) and ``with_options(**overrides)``: a
            :class:`grounded_sam.GroundingDinoDetector` or :class:`grounded_sam.ClipMaskDetector`.
        segmenter: a :class:`grounded_sam.SamSegmenter` (``segment(image, detections)``).
        refine_boxes_from_masks: each box becomes its mask's tight box (empty masks: kept).
        min_mask_area: drop detections of fewer mask pixels (0 keeps all); ``top_k``: keep the
            ``top_k`` best detections before segmenting (None: all).
        classes: the default class list of :meth:`label` (``None``: the prompt's classes).
        **label_options: for :func:`grounded_sam.labeling.label`: ``synonyms``
            (``{class: [alias, ...]}``), ``box_threshold_accept`` and ``mask_threshold_accept``
            (detections scored below these are flagged ``data["needs_review"]``).
    """

    def __init__(
        self,
        detector: Any,
        segmenter: Any,
        *,
        refine_boxes_from_masks: bool = False,
        min_mask_area: int = 0,
        top_k: int | None = None,
        classes: Sequence[str] | None = None,
        **label_options: Any,
    ) -> None:
        from grounded_sam.validation import check_int

        self.detector = detector
        self.segmenter = segmenter
        self.refine_boxes_from_masks = bool(refine_boxes_from_masks)
        self.min_mask_area = check_int("min_mask_area", min_mask_area, low=0)
        self.top_k = None if top_k is None else check_int("top_k", top_k, low=1)
        self.classes = None if classes is None else parse_classes(classes)
        self.label_options = dict(label_options)
        self.names: dict[str, str] = {}  # registry names of the models, when built from them

    @classmethod
    def from_registry(
        cls, sam: str = "vit_b", detector: str = "grounding-dino-tiny", **kwargs: Any
    ) -> Pipeline:
        """A pipeline of registry models, built by :func:`grounded_sam.models.build.components`.

        Args:
            sam: ``"vit_b"``, ``"vit_l"``, ``"vit_h"`` (or ``"sam_vit_b"`` …) or a SAM 2.1 name
                (``"sam2.1_hiera_tiny"``, ``_small``, ``_base_plus``, ``_large``).
            detector: ``"grounding-dino-tiny"``, ``"grounding-dino-base"``, a Grounding DINO
                folder or ``.pth``, or ``"clip"`` (SAM's automatic masks scored by CLIP).
            **kwargs: the factory's ``device`` (None: CUDA when available), ``models_dir``
                (``$GROUNDED_SAM_MODELS`` or ``./models``), ``precision`` (``"exact"``,
                ``"fast"``, ``"fast-bf16"`` …: :mod:`grounded_sam.precision`),
                ``detector_options``, ``segmenter_options``; the rest are the Pipeline's.

        Raises:
            MissingCheckpointError: naming the missing file and ``grounded-sam download NAME``.
        """
        from grounded_sam.models import build

        factory, options = build.split_kwargs(build.components, kwargs)
        det, seg, names = build.components(sam, detector, **factory)
        return cls(det, seg, **options).named(names)

    from_pretrained = from_registry

    @classmethod
    def tiny_random(
        cls, classes: Sequence[str] | str, detector: str = "grounding-dino", **kwargs: Any
    ) -> Pipeline:
        """A pipeline of tiny untrained models (no checkpoints, meaningless outputs; ~0.1 s a
        small image on a CPU) for smoke runs, tests and demos, built by
        :func:`grounded_sam.models.build.tiny_components` (``sam="sam2"``, ``seed``,
        ``device``, ``precision``, ``detector_options``); ``classes`` are the default
        ``classes`` and the tiny tokenizer's words; other ``kwargs`` are the Pipeline's."""
        from grounded_sam.models import build

        names = parse_classes(classes)
        factory, options = build.split_kwargs(build.tiny_components, kwargs)
        det, seg, built = build.tiny_components(names, detector, **factory)
        return cls(det, seg, **{"classes": names, **options}).named(built)

    def named(self, names: Mapping[str, str]) -> Pipeline:
        """This pipeline, its models' names (``{"sam": ..., "detector": ...}``) recorded."""
        self.names = dict(names)
        return self

    def detect(self, image: ImageLike, prompt: str | Sequence[str], **overrides: Any) -> Detections:
        """Boxes for a text prompt (``"cat . dog"`` or ``["cat", "dog"]``): ``xyxy`` float32
        (N, 4) pixels of the original image, ``scores`` float32 (N,), ``phrases``,
        ``class_id``; the ``top_k`` best first. ``overrides`` change the detector's options
        for this call, checked as its constructor checks them (``box_threshold=5``: ValueError).
        """
        from grounded_sam.image import as_rgb

        detector = self.detector.with_options(**overrides) if overrides else self.detector
        detections = detector.detect(as_rgb(image), prompt)
        if self.top_k is not None and len(detections) > self.top_k:
            detections = detections.top_k(self.top_k)
        return detections

    def segment(self, image: ImageLike, detections: Detections) -> Detections:
        """SAM masks for the N boxes of ``detections`` (pixels of ``image``; one batched
        decoder call): ``masks`` bool (N, H, W) at the original size, ``mask_scores`` float32
        (N,); under ``min_mask_area`` pixels dropped; ``refine_boxes_from_masks``: tight boxes."""
        from grounded_sam.image import as_rgb
        from grounded_sam.validation import check_detections

        image = as_rgb(image)
        check_detections("detections", detections, image)
        out = self.segmenter.segment(image, detections).with_min_mask_area(self.min_mask_area)
        return out.with_mask_boxes() if self.refine_boxes_from_masks else out

    def label(
        self,
        detections: Detections,
        classes: Sequence[str] | str | None = None,
        *,
        prompt: Sequence[str] | str | None = None,
    ) -> Detections:
        """:func:`grounded_sam.labeling.label`: ``class_id`` int64 (N,) indexing ``classes``
        (a list or ``"cat . dog"``; None: the pipeline's, else the prompt's; -1: no class),
        class names and review flags in ``data``. Given the detections' ``prompt``, the
        detector's class is kept (mapped by name to other classes); else phrases are matched."""
        from grounded_sam.labeling import label

        if classes is None:
            classes = self.classes if self.classes is not None else prompt
        if classes is None:
            raise PromptError(
                "label() needs the class names: pass classes=[...] or prompt=..., or build "
                "the Pipeline with classes=[...]"
            )
        return label(detections, classes, prompt_classes=prompt, **self.label_options)

    def __call__(self, image: ImageLike, prompt: PromptLike, classes: Any = None) -> Detections:
        """Detect, segment and label ``image`` (decoded once, embedded once); ``classes`` as
        in :meth:`label`. Returns boxes (float32 (N, 4) pixels), masks (bool (N, H, W)),
        mask scores and class ids (int64 (N,), -1 for none)."""
        from grounded_sam.image import as_rgb

        image = as_rgb(image)
        return self.label(self.segment(image, self.detect(image, prompt)), classes, prompt=prompt)

    def config(self) -> dict[str, Any]:
        """A JSON-able description of everything that changes this pipeline's output, whose
        fingerprint ``auto_label`` keeps so that a resumed run never mixes two
        configurations: each model's own ``config()`` with its type and registry name, this
        pipeline's options, and with a fast path ``fast_compute_dtype``
        (:func:`grounded_sam.precision.fast_compute_dtype`)."""
        from grounded_sam.precision import fast_compute_dtype

        return {
            "detector": _described(self.detector, self.names.get("detector")),
            "segmenter": _described(self.segmenter, self.names.get("sam")),
            "refine_boxes_from_masks": self.refine_boxes_from_masks,
            "min_mask_area": self.min_mask_area,
            "top_k": self.top_k,
            "classes": self.classes,
            "label_options": json.loads(json.dumps(self.label_options, sort_keys=True)),
            **fast_compute_dtype(self.segmenter, self.detector),
        }

    def __repr__(self) -> str:
        d, s = type(self.detector).__name__, type(self.segmenter).__name__
        return (
            f"Pipeline(detector={d}, segmenter={s}, top_k={self.top_k}, min_mask_area="
            f"{self.min_mask_area}, refine_boxes_from_masks={self.refine_boxes_from_masks})"
        )


def _described(component: Any, name: str | None) -> dict[str, Any]:
    """A model's ``config()`` with its type and registry name first."""
    return {"type": type(component).__qualname__, "name": name, **component.config()}
