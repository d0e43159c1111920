"""``Pipeline``: detect -> segment -> label, each step ``Detections`` in, ``Detections`` out.

Every step can be run on its own, inspected, adjusted and continued::

    pipe = gs.Pipeline(detector, segmenter, top_k=20)
    image = gs.load_image("kitchen.jpg")
    boxes = pipe.detect(image, "cup . knife")          # boxes, scores, phrases
    boxes = boxes[boxes.scores > 0.4]                    # look, filter, continue
    masks = pipe.segment(image, boxes)                   # + masks, mask_scores
    final = pipe.label(masks, prompt="cup . knife")      # + class names, review flags

``pipe(image, prompt)`` runs the three steps on an image loaded once; the segmenter caches
embeddings by image content, so the image encoder runs once per image even when the
detector (SAM automatic masks scored by CLIP) needs the embedding too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grounded_sam.classes import parse_classes
from grounded_sam.errors import MissingCheckpointError, PromptError
from grounded_sam.types import Detections

ImageLike = Any  # a path, bytes, PIL image or ndarray: whatever gs.load_image accepts


class Pipeline:
    """An open-vocabulary detector composed with SAM, and a label step.

    Args:
        detector: an object with ``detect(image, prompt) -> Detections`` (boxes in pixels of
            the original image), e.g. :class:`grounded_sam.GroundingDinoDetector` or
            :class:`grounded_sam.ClipMaskDetector`.
        segmenter: a :class:`grounded_sam.SamSegmenter` (``segment(image, detections)``).
        refine_boxes_from_masks: replace each box with the tight box of its mask (boxes of
            empty masks are kept as detected).
        min_mask_area: drop detections whose mask covers fewer pixels than this (0 keeps all).
        top_k: keep only the ``top_k`` highest-scoring detections before segmenting
            (``None`` keeps all).
        classes: the default class list of :meth:`label` (``None``: the prompt's classes).
        **label_options: passed to :func:`grounded_sam.labeling.label`: ``synonyms``
            (``{class: [alias, ...]}``), ``box_threshold_accept`` and ``mask_threshold_accept``
            (detections whose detector score or SAM mask score is below these are flagged
            ``data["needs_review"]``).
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

        min_mask_area = check_int("min_mask_area", min_mask_area, low=0)
        if top_k is not None:
            top_k = check_int("top_k", top_k, low=1)
        self.detector = detector
        self.segmenter = segmenter
        self.refine_boxes_from_masks = bool(refine_boxes_from_masks)
        self.min_mask_area = int(min_mask_area)
        self.top_k = top_k
        self.classes = None if classes is None else parse_classes(classes)
        self.label_options = dict(label_options)
        self.names: dict[str, str] = {}  # registry names of the models, when built from them

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_registry(
        cls,
        sam: str = "vit_b",
        detector: str = "grounding-dino-tiny",
        *,
        device: str | None = None,
        models_dir: str | Path | None = None,
        detector_options: Mapping[str, Any] | None = None,
        segmenter_options: Mapping[str, Any] | None = None,
        fast: bool = False,
        **options: Any,
    ) -> Pipeline:
        """Build a pipeline from checkpoints in the models directory, by registry name.

        Args:
            sam: a SAM model of the registry: ``"vit_b"``, ``"vit_l"``, ``"vit_h"`` (or
                ``"sam_vit_b"`` …), or SAM 2.1: ``"sam2.1_hiera_tiny"``, ``_small``,
                ``_base_plus``, ``_large`` (a :class:`grounded_sam.Sam2Segmenter`, exact path
                only: ``fast`` does not change it).
            detector: ``"grounding-dino-tiny"``, ``"grounding-dino-base"``, or ``"clip"`` (SAM
                automatic masks scored by the registry's default open_clip model, or a CLIP
                name of the registry such as ``"clip_vit_b32"``).
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` … (``None``: CUDA when available).
            models_dir: where the checkpoints are (default: ``$GROUNDED_SAM_MODELS`` or
                ``./models``).
            detector_options / segmenter_options: keyword arguments of the detector /
                ``SamSegmenter`` (e.g. ``box_threshold``, ``cache_size``, ``dtype``); a
                ``fast`` given there wins over the ``fast`` argument.
            fast: the optimised inference paths (``fast_sam``, ``fast_decoder``,
                ``fast_grounding_dino``): bfloat16 on CPUs with AMX or AVX512-BF16, float32
                on other CPUs, only SAM's image encoder on GPUs (README "Speed";
                benchmarks/README.md). ``segmenter_options={"dtype": ...}`` /
                ``detector_options={"fast_dtype": ...}`` override the dtype,
                ``GROUNDED_SAM_FORCE_FP32=1`` forces float32. The models are optimised in
                place on their first call. Close to the exact path, not equal, so the
                default (``False``) is the original models' arithmetic.
            **options: the :class:`Pipeline` options.

        Raises:
            MissingCheckpointError: a file is not on disk; the message names it and the
                ``grounded-sam download NAME`` command that fetches it.
        """
        from grounded_sam.detectors.clip_masks import ClipMaskDetector
        from grounded_sam.detectors.grounding_dino import GroundingDinoDetector
        from grounded_sam.models import registry
        from grounded_sam.segmenters.factory import build_segmenter

        if device is None:
            device = default_device()
        sam_entry = _entry(registry, sam, "sam")
        det_entry = _entry(registry, detector, "grounding_dino")
        for entry in (sam_entry, det_entry):
            missing = registry.missing_files(entry, models_dir)
            if missing:
                raise MissingCheckpointError(missing[0], name=entry.name)
        segmenter = build_segmenter(
            sam_entry,
            registry.model_path(sam_entry, models_dir),
            device=device,
            fast=bool(fast),
            **dict(segmenter_options or {}),
        )
        path = registry.model_path(det_entry, models_dir)
        if det_entry.kind == "clip":
            det: Any = ClipMaskDetector.from_pretrained(
                det_entry.builder["model_name"],
                path,
                segmenter=segmenter,
                device=device,
                model_id=det_entry.name,
                **dict(detector_options or {}),
            )
        else:
            det = GroundingDinoDetector.from_pretrained(
                path, device=device, **{"fast": bool(fast), **dict(detector_options or {})}
            )
        pipe = cls(det, segmenter, **options)
        pipe.names = {"sam": sam_entry.name, "detector": det_entry.name}
        return pipe

    from_pretrained = from_registry

    @classmethod
    def tiny_random(
        cls,
        classes: Sequence[str] | str,
        detector: str = "grounding-dino",
        *,
        seed: int = 0,
        device: str | None = None,
        detector_options: Mapping[str, Any] | None = None,
        fast: bool = False,
        sam: str = "sam",
        **options: Any,
    ) -> Pipeline:
        """A pipeline of tiny untrained models (``grounded_sam.testing``): no checkpoints, runs
        in well under a second per small image on a CPU, outputs are meaningless. For smoke
        runs (``grounded-sam label --tiny-random``), tests and demos.

        Args:
            classes: the class names (the pipeline's default ``classes``); their words are put
                in the tiny tokenizer's vocabulary.
            detector: ``"grounding-dino"`` or ``"clip"``.
            seed: the same seed gives the same weights, hence the same outputs.
            device: where the models run (default: the CPU).
            detector_options: keyword arguments of the detector (thresholds …).
            fast: the optimised inference paths, as in :meth:`from_registry`.
            sam: ``"sam"`` (a tiny SAM, ~0.1 s an image on a CPU) or ``"sam2"`` (or any
                SAM 2.1 name: a tiny SAM 2.1, ~1.5 s an image).
            **options: the :class:`Pipeline` options.
        """
        import tempfile

        from grounded_sam.segmenters.factory import is_sam2, tiny_segmenter

        names = parse_classes(classes)
        segmenter = tiny_segmenter(sam, seed=seed, device=device, fast=fast)
        kind = detector.strip().lower().replace("_", "-")
        if kind in ("grounding-dino", "grounding-dino-tiny", "grounding-dino-base"):
            from grounded_sam.detectors.grounding_dino import GroundingDinoDetector
            from grounded_sam.testing.grounding_dino import tiny_grounding_dino

            words = sorted({w for n in names for w in n.lower().split()})
            with tempfile.TemporaryDirectory() as vocab_dir:  # the tokenizer reads it at once
                model, processor = tiny_grounding_dino(vocab_dir, seed=seed, words=words)
            det: Any = GroundingDinoDetector(
                model, processor, device=device, **{"fast": bool(fast), **(detector_options or {})}
            )
        elif kind == "clip":
            from grounded_sam.detectors.clip_masks import ClipMaskDetector
            from grounded_sam.testing.clip import tiny_clip

            model, preprocess, tokenizer = tiny_clip(seed=seed)
            model = model.to(device or "cpu")
            opts: dict[str, Any] = {
                "model_id": "tiny-random-clip",
                "score_threshold": 0.0,
                "background_prompts": (),  # random weights: let every proposal get a class
                "amg_options": {
                    "points_per_side": 4,
                    "pred_iou_thresh": 0.0,
                    "stability_score_thresh": 0.0,
                },
            }
            opts.update(detector_options or {})
            det = ClipMaskDetector(segmenter, model, preprocess, tokenizer, **opts)
        else:
            raise ValueError(f"detector must be 'grounding-dino' or 'clip', got {detector!r}")
        options.setdefault("classes", names)
        pipe = cls(det, segmenter, **options)
        sam_name = f"tiny-random-sam2-{seed}" if is_sam2(sam) else f"tiny-random-{seed}"
        pipe.names = {"sam": sam_name, "detector": f"tiny-random-{kind}-{seed}"}
        return pipe

    # ------------------------------------------------------------------ steps
    def detect(self, image: ImageLike, prompt: str | Sequence[str]) -> Detections:
        """Boxes for a text prompt.

        Args:
            image: anything :func:`grounded_sam.load_image` accepts (RGB uint8 (H, W, 3) …).
            prompt: ``"cat . dog"`` or ``["cat", "dog"]``.

        Returns:
            ``Detections`` with ``xyxy`` float32 (N, 4) in pixels of the original image,
            ``scores`` float32 (N,), ``phrases``; no masks yet. With ``top_k`` only the
            ``top_k`` best, highest score first.
        """
        from grounded_sam.image import as_rgb

        image = as_rgb(image)
        detections = self.detector.detect(image, prompt)
        if self.top_k is not None and len(detections) > self.top_k:
            detections = detections.top_k(self.top_k)
        return detections

    def segment(self, image: ImageLike, detections: Detections) -> Detections:
        """SAM masks for the boxes of ``detections`` (one batched decoder call).

        Args:
            image: the image the boxes belong to; its embedding is cached by content.
            detections: N boxes in pixels of the original image.

        Returns:
            The detections with ``masks`` bool (N, H, W) at the original size and
            ``mask_scores`` float32 (N,); those under ``min_mask_area`` pixels are dropped and,
            with ``refine_boxes_from_masks``, boxes are the tight boxes of the masks.
        """
        from grounded_sam.image import as_rgb
        from grounded_sam.masks import mask_area, masks_to_xyxy
        from grounded_sam.validation import check_detections

        check_detections("detections", detections)
        image = as_rgb(image)
        if detections.image_size != tuple(image.shape[:2]):
            raise ValueError(
                f"the detections belong to an image of (H, W) = {detections.image_size}, "
                f"but this image is {tuple(image.shape[:2])}; pass the image they were "
                f"detected on"
            )
        out = self.segmenter.segment(image, detections)
        if self.min_mask_area > 0 and len(out):
            out = out[mask_area(out.masks) >= self.min_mask_area]
        if self.refine_boxes_from_masks and len(out):
            tight = masks_to_xyxy(out.masks)
            empty = ~out.masks.reshape(len(out), -1).any(axis=1)
            tight[empty] = out.xyxy[empty]
            out = out.replace(xyxy=tight)
        return out

    def label(
        self,
        detections: Detections,
        classes: Sequence[str] | str | None = None,
        *,
        prompt: Sequence[str] | str | None = None,
    ) -> Detections:
        """Give detections their place in ``classes`` and flag uncertain ones for review.

        Delegates to :func:`grounded_sam.labeling.label` with this pipeline's label options.

        Args:
            detections: the output of :meth:`detect` or :meth:`segment`.
            classes: the class names (a list or a ``"cat . dog"`` prompt); ``None`` uses the
                pipeline's ``classes``, else the prompt's.
            prompt: the prompt the detections were detected with. Given, the detector's
                ``class_id`` is kept when ``classes`` are the prompt's classes and mapped by
                name otherwise; ``None``: classes come from matching the phrases' text.

        Returns:
            The detections with ``class_id`` int64 (N,) indexing ``classes`` (-1: no class)
            and the label step's ``data`` entries (class names, review flags).
        """
        from grounded_sam.labeling import label

        prompt_classes = None if prompt is None else parse_classes(prompt)
        if classes is None:
            classes = self.classes if self.classes is not None else prompt_classes
        if classes is None:
            raise PromptError(
                "label() needs the class names: pass classes=[...] or prompt=..., or build "
                "the Pipeline with classes=[...]"
            )
        return label(
            detections, parse_classes(classes), prompt_classes=prompt_classes, **self.label_options
        )

    def __call__(
        self,
        image: ImageLike,
        prompt: str | Sequence[str],
        classes: Sequence[str] | str | None = None,
    ) -> Detections:
        """Detect, segment and label: the image is loaded once and embedded once.

        Args:
            image: anything :func:`grounded_sam.load_image` accepts.
            prompt: ``"cat . dog"`` or ``["cat", "dog"]``.
            classes: the class list of the label step (default: the pipeline's ``classes``,
                else the prompt's classes in order). The detector's class is kept when they
                are the prompt's classes and mapped by name otherwise.

        Returns:
            ``Detections`` with boxes (float32 (N, 4) pixels), masks (bool (N, H, W)),
            mask scores and class ids (int64 (N,), -1 for none).
        """
        from grounded_sam.image import as_rgb

        image = as_rgb(image)
        detections = self.detect(image, prompt)
        detections = self.segment(image, detections)
        return self.label(detections, classes, prompt=prompt)

    # ------------------------------------------------------------------ description
    def config(self) -> dict[str, Any]:
        """A JSON-able description of everything that changes this pipeline's output.

        ``auto_label`` stores a fingerprint of it so that a resumed run never mixes results
        of two configurations. Models are described by type, registry name, parameter count
        and their public scalar settings (thresholds, ``fast`` …). When a model runs a fast
        path, ``fast_compute_dtype`` is the dtype its "auto" setting resolves to on this
        machine (it depends on the CPU and ``GROUNDED_SAM_FORCE_FP32``).
        """
        config = {
            "detector": _describe(self.detector, self.names.get("detector")),
            "segmenter": _describe(self.segmenter, self.names.get("sam")),
            "refine_boxes_from_masks": self.refine_boxes_from_masks,
            "min_mask_area": self.min_mask_area,
            "top_k": self.top_k,
            "classes": self.classes,
            "label_options": _jsonable(self.label_options),
        }
        if getattr(self.segmenter, "fast", False) or getattr(self.detector, "fast", False):
            from grounded_sam.runtime import resolve_compute_dtype

            device = getattr(self.segmenter, "device", None) or "cpu"
            config["fast_compute_dtype"] = str(resolve_compute_dtype(None, device))
        return config

    def __repr__(self) -> str:
        return (
            f"Pipeline(detector={type(self.detector).__name__}, "
            f"segmenter={type(self.segmenter).__name__}, top_k={self.top_k}, "
            f"min_mask_area={self.min_mask_area}, "
            f"refine_boxes_from_masks={self.refine_boxes_from_masks})"
        )


def _entry(registry: Any, name: str, kind: str) -> Any:
    """The registry entry for a user's model name: a full name (``sam_vit_b``,
    ``grounding-dino-tiny``), a SAM model type (``vit_b``) or a kind (``clip``: its default);
    for the detector also a Grounding DINO folder or original ``.pth`` on disk."""
    if kind != "sam" and (local := registry.local_entry(name)) is not None:
        return local
    key = name.strip().lower().replace("-", "_")
    if key in registry.DEFAULTS:
        key = registry.DEFAULTS[key]
    elif kind == "sam" and key not in registry.REGISTRY:
        key = f"sam_{key}"
    entry = registry.get_entry(key)
    allowed = ("sam",) if kind == "sam" else ("grounding_dino", "clip")
    if entry.kind not in allowed:
        raise ValueError(
            f"{name!r} is a {entry.kind} model, not a {' or '.join(allowed)} model; known: "
            f"{', '.join(n for k in allowed for n in registry.names(k))}"
        )
    return entry


def default_device() -> str:
    """``"cuda"`` when a CUDA GPU is usable, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


_SCALARS = (bool, int, float, str, type(None))


def _describe(component: Any, name: str | None) -> dict[str, Any]:
    """Type, registry name, parameter count and public settings of a model wrapper.

    Settings are the public attributes holding plain data (numbers, strings, and lists, tuples
    and dicts of them: thresholds, templates, options) and dtypes; models, processors and
    counters are left out.
    """
    if hasattr(component, "config") and callable(component.config):
        settings = _jsonable(component.config())
    else:
        settings = {}
        for k, v in sorted(vars(component).items()):
            if k.startswith("_"):
                continue
            if _is_plain(v):
                settings[k] = _jsonable(v)
            elif type(v).__name__ == "dtype":  # torch.float32 / bfloat16 change the numbers
                settings[k] = str(v)
    params = 0
    for value in vars(component).values():
        parameters = getattr(value, "parameters", None)
        if callable(parameters):
            try:
                params += sum(int(p.numel()) for p in parameters())
            except TypeError:  # not a torch module after all
                continue
    return {"type": type(component).__qualname__, "name": name, "params": params, **settings}


def _is_plain(value: Any) -> bool:
    if isinstance(value, (*_SCALARS, np.generic)):
        return True
    if isinstance(value, list | tuple):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, _SCALARS):
        return value
    return repr(value)
