"""The one model factory: every component from a registry name, a file, or tiny random weights.

``Pipeline.from_registry`` / ``Pipeline.tiny_random``, the web service's ``ModelManager``, the
CLI and the app ask here; none of them builds a model itself.

- :func:`segmenter`: SAM (``"vit_b"``, ``"sam_vit_b"`` …) or SAM 2.1 (``"sam2.1_hiera_tiny"``
  …) from the models folder (segmenter classes are chosen by
  :mod:`grounded_sam.segmenters.factory`).
- :func:`detector`: Grounding DINO (a registry name, a model folder or an original ``.pth``)
  or ``"clip"`` (SAM's automatic masks scored by open_clip, over a given segmenter).
- :func:`tiny_segmenter`, :func:`tiny_detector`: the same classes on tiny seeded random
  models of :mod:`grounded_sam.testing` (no files; outputs are meaningless).
- :func:`components` / :func:`tiny_components`: a detector and a segmenter together, with
  the names a pipeline's configuration records.

``precision`` is :mod:`grounded_sam.precision`'s one setting; it reaches SAM and Grounding
DINO (CLIP scores the masks of the segmenter it is given and has no fast path).
Every function checks that the files are on disk before building: a missing one is a
:class:`~grounded_sam.errors.MissingCheckpointError` naming it and the
``grounded-sam download NAME`` command.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from grounded_sam.precision import UNSET, Precision, from_legacy

GROUNDING_DINO = "grounding_dino"
CLIP = "clip"
DETECTOR_KINDS = (GROUNDING_DINO, CLIP)

# SAM's automatic-mask quality filters drop every mask of an untrained model; tiny CLIP
# detectors keep them all and use a coarse grid so that they stay fast on a CPU.
TINY_AMG_OPTIONS: Mapping[str, Any] = {
    "points_per_side": 4,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
}


def default_device() -> str:
    """``"cuda"`` when a CUDA GPU is usable, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def entry(name: Any, kind: str) -> Any:
    """The registry entry for a user's model name.

    Args:
        name: a full name (``"sam_vit_b"``, ``"grounding-dino-tiny"``), a SAM model type
            (``"vit_b"``), a kind (``"clip"``: its default), a ``ModelEntry``, or, for a
            detector, a Grounding DINO folder or original ``.pth`` on disk.
        kind: ``"sam"`` or ``"detector"`` (Grounding DINO or CLIP).

    Raises:
        KeyError: an unknown name (the known ones are listed).
        ValueError: a model of the other kind.
    """
    from grounded_sam.models import registry

    if isinstance(name, registry.ModelEntry):
        return name
    if kind != "sam" and (local := registry.local_entry(name)) is not None:
        return local
    key = str(name).strip().lower().replace("-", "_")
    if key in registry.DEFAULTS:
        key = registry.DEFAULTS[key]
    elif kind == "sam" and key not in registry.REGISTRY:
        key = f"sam_{key}"
    found = registry.get_entry(key)
    allowed = ("sam",) if kind == "sam" else DETECTOR_KINDS
    if found.kind not in allowed:
        raise ValueError(
            f"{name!r} is a {found.kind} model, not a {' or '.join(allowed)} model; known: "
            f"{', '.join(n for k in allowed for n in registry.names(k))}"
        )
    return found


def checked_path(model: Any, models_dir: str | Path | None = None) -> Path:
    """What a builder loads for registry entry ``model`` (file or folder), once every file of
    it is on disk with the registry's size.

    Raises:
        MissingCheckpointError: naming the first missing file and its download command.
    """
    from grounded_sam.errors import MissingCheckpointError
    from grounded_sam.models import registry

    missing = registry.missing_files(model, models_dir)
    if missing:
        raise MissingCheckpointError(missing[0], name=model.name)
    return registry.model_path(model, models_dir)


def segmenter(
    sam: Any = "vit_b",
    *,
    device: str | None = None,
    models_dir: str | Path | None = None,
    precision: str | Precision | None = None,
    **options: Any,
) -> Any:
    """A ``SamSegmenter`` / ``Sam2Segmenter`` from the models folder.

    Args:
        sam: ``"vit_b"``, ``"vit_l"``, ``"vit_h"`` (or ``"sam_vit_b"`` …) or a SAM 2.1 name
            (``"sam2.1_hiera_tiny"``, ``_small``, ``_base_plus``, ``_large``).
        device: ``"cpu"``, ``"cuda"`` … (None: CUDA when available).
        models_dir: the checkpoints' folder (default ``$GROUNDED_SAM_MODELS`` or ``./models``).
        precision: ``"exact"`` (default), ``"fast"``, ``"fast-bf16"`` … (SAM 2.1: exact only).
        options: the segmenter's other keyword arguments (``cache_size``, ``max_batch`` …).
    """
    from grounded_sam.segmenters.factory import build_segmenter

    model = entry(sam, "sam")
    path = checked_path(model, models_dir)
    device = device or default_device()
    return build_segmenter(model, path, device=device, precision=precision, **options)


def detector(
    name: Any = "grounding-dino-tiny",
    *,
    segmenter: Any = None,
    device: str | None = None,
    models_dir: str | Path | None = None,
    precision: str | Precision | None = None,
    **options: Any,
) -> Any:
    """A ``GroundingDinoDetector`` or a ``ClipMaskDetector`` from the models folder.

    Args:
        name: ``"grounding-dino-tiny"``, ``"grounding-dino-base"``, an original checkpoint's
            name, a Grounding DINO folder or ``.pth`` on disk, or ``"clip"`` (the registry's
            default open_clip model) / a CLIP registry name (``"clip_vit_b32"``).
        segmenter: the proposal source of a CLIP detector (required for CLIP, else unused).
        device / models_dir: as in :func:`segmenter`.
        precision: Grounding DINO's (:mod:`grounded_sam.precision`); CLIP has one path.
        options: the detector's options (``box_threshold`` …, ``score_threshold`` …).
    """
    model = entry(name, "detector")
    path = checked_path(model, models_dir)
    device = device or default_device()
    if model.kind == CLIP:
        from grounded_sam.detectors.clip_masks import ClipMaskDetector

        if segmenter is None:
            raise ValueError("a CLIP detector scores a segmenter's masks: pass segmenter=...")
        options.setdefault("model_id", model.name)
        return ClipMaskDetector.from_pretrained(
            model.builder["model_name"], path, segmenter=segmenter, device=device, **options
        )
    from grounded_sam.detectors.grounding_dino import GroundingDinoDetector

    return GroundingDinoDetector.from_pretrained(
        path, device=device, models_dir=models_dir, precision=precision, **options
    )


def components(
    sam: Any = "vit_b",
    detector_name: Any = "grounding-dino-tiny",
    *,
    device: str | None = None,
    models_dir: str | Path | None = None,
    precision: str | Precision | None = None,
    detector_options: Mapping[str, Any] | None = None,
    segmenter_options: Mapping[str, Any] | None = None,
    fast: Any = UNSET,
) -> tuple[Any, Any, dict[str, str]]:
    """``(detector, segmenter, names)`` from the models folder; every file of both models is
    checked before either is built.

    Args:
        sam / detector_name: as :func:`segmenter`'s ``sam`` and :func:`detector`'s ``name``.
        device / models_dir / precision: as in :func:`segmenter`; ``fast=True`` is the
            deprecated ``precision="fast"`` (a ``fast`` in the options dicts wins).
        detector_options / segmenter_options: the components' other keyword arguments.

    Returns:
        The detector, the segmenter, and ``{"sam": ..., "detector": ...}`` registry names as
        a pipeline's configuration records them.
    """
    sam_entry, det_entry = entry(sam, "sam"), entry(detector_name, "detector")
    detector_options, segmenter_options = (
        dict(detector_options or {}),
        dict(segmenter_options or {}),
    )
    if fast is not UNSET:  # the components' own deprecated ``fast``: each warns
        segmenter_options.setdefault("fast", bool(fast))
        if det_entry.kind != CLIP:
            detector_options.setdefault("fast", bool(fast))
    for model in (sam_entry, det_entry):
        checked_path(model, models_dir)
    device = device or default_device()
    seg = segmenter(
        sam_entry,
        device=device,
        models_dir=models_dir,
        precision=precision,
        **segmenter_options,
    )
    det = detector(
        det_entry,
        segmenter=seg,
        device=device,
        models_dir=models_dir,
        precision=None if det_entry.kind == CLIP else precision,
        **detector_options,
    )
    return det, seg, {"sam": sam_entry.name, "detector": det_entry.name}


def tiny_segmenter(
    sam: str = "sam",
    *,
    seed: int = 0,
    device: str | None = None,
    precision: str | Precision | None = None,
) -> Any:
    """A segmenter on a tiny seeded random model: ``sam`` ``"sam"`` (~0.1 s an image on a CPU)
    or ``"sam2"`` / any SAM 2.1 name (~1.5 s an image). Outputs are meaningless."""
    from grounded_sam.segmenters.factory import tiny_segmenter as build_tiny

    return build_tiny(sam, seed=seed, device=device, precision=precision)


def tiny_detector(
    kind: str = "grounding-dino",
    *,
    segmenter: Any = None,
    words: Sequence[str] = (),
    seed: int = 0,
    device: str | None = None,
    precision: str | Precision | None = None,
    **options: Any,
) -> Any:
    """A detector on a tiny seeded random model.

    Args:
        kind: ``"grounding-dino"`` (also ``"grounding_dino"``, ``-tiny``, ``-base``) or
            ``"clip"``.
        segmenter: the proposal source of a CLIP detector.
        words: words for the tiny Grounding DINO tokenizer's vocabulary (others become
            ``[UNK]``; outputs are random either way, this keeps phrases readable).
        seed: the same seed gives the same weights.
        device: where the model runs (None: the CPU).
        precision: Grounding DINO's (:mod:`grounded_sam.precision`).
        options: the detector's options. A CLIP detector defaults to ``TINY_AMG_OPTIONS`` and
            no background prompts (random CLIP: every proposal gets a class).
    """
    key = tiny_kind(kind)
    if key == GROUNDING_DINO:
        from grounded_sam.detectors.grounding_dino import GroundingDinoDetector
        from grounded_sam.testing.grounding_dino import tiny_grounding_dino

        vocab = sorted({w.lower() for w in words})
        with tempfile.TemporaryDirectory() as vocab_dir:  # the tokenizer reads it at once
            model, processor = tiny_grounding_dino(vocab_dir, seed=seed, words=vocab)
        return GroundingDinoDetector(
            model, processor, device=device, precision=precision, **options
        )
    from grounded_sam.detectors.clip_masks import ClipMaskDetector
    from grounded_sam.testing.clip import tiny_clip

    if segmenter is None:
        raise ValueError("a CLIP detector scores a segmenter's masks: pass segmenter=...")
    model, preprocess, tokenizer = tiny_clip(seed=seed)
    defaults = {
        "model_id": "tiny-random-clip",
        "background_prompts": (),
        "amg_options": dict(TINY_AMG_OPTIONS),
    }
    return ClipMaskDetector(
        segmenter, model.to(device or "cpu"), preprocess, tokenizer, **{**defaults, **options}
    )


def tiny_kind(kind: str) -> str:
    """``"grounding_dino"`` or ``"clip"`` for a user's spelling of a tiny detector's kind."""
    key = kind.strip().lower().replace("-", "_")
    if key in ("grounding_dino", "grounding_dino_tiny", "grounding_dino_base"):
        return GROUNDING_DINO
    if key == CLIP:
        return CLIP
    raise ValueError(f"detector must be 'grounding-dino' or 'clip', got {kind!r}")


def tiny_components(
    classes: Sequence[str],
    detector_kind: str = "grounding-dino",
    *,
    sam: str = "sam",
    seed: int = 0,
    device: str | None = None,
    precision: str | Precision | None = None,
    detector_options: Mapping[str, Any] | None = None,
    fast: Any = UNSET,
) -> tuple[Any, Any, dict[str, str]]:
    """``(detector, segmenter, names)`` on tiny random models.

    Args:
        classes: class names; their words go into the tiny tokenizer's vocabulary.
        detector_kind: ``"grounding-dino"`` or ``"clip"``.
        sam: ``"sam"`` (~0.1 s a small image on a CPU) or ``"sam2"`` / a SAM 2.1 name (~1.5 s).
        seed: the same seed gives the same weights, hence the same outputs.
        device: where the models run (None: the CPU).
        precision: as in :func:`segmenter` (``fast=True``: the deprecated ``"fast"``).
        detector_options: the detector's options (thresholds …).

    Returns:
        The detector, the segmenter, and names that say which seed built them.
    """
    from grounded_sam.segmenters.factory import is_sam2

    if fast is not UNSET:
        precision = from_legacy(precision, owner="tiny_components", fast=fast)

    seg = tiny_segmenter(sam, seed=seed, device=device, precision=precision)
    key = tiny_kind(detector_kind)
    words = [w for name in classes for w in name.split()]
    options = dict(detector_options or {})
    if key == CLIP:  # random CLIP probabilities are near uniform: keep every proposal
        options.setdefault("score_threshold", 0.0)
    det = tiny_detector(
        key,
        segmenter=seg,
        words=words,
        seed=seed,
        device=device,
        precision=None if key == CLIP else precision,
        **options,
    )
    sam_name = f"tiny-random-sam2-{seed}" if is_sam2(sam) else f"tiny-random-{seed}"
    kind_name = detector_kind.strip().lower().replace("_", "-")
    return det, seg, {"sam": sam_name, "detector": f"tiny-random-{kind_name}-{seed}"}


def split_kwargs(factory: Any, kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``kwargs`` split into those ``factory`` takes by keyword and the rest (a pipeline's
    own options), so that ``Pipeline.from_registry(..., device=..., top_k=5)`` reads as one
    call."""
    import inspect

    params = inspect.signature(factory).parameters
    names = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    mine = {k: v for k, v in kwargs.items() if k in names}
    return mine, {k: v for k, v in kwargs.items() if k not in names}
