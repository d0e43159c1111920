"""The demo's models: built lazily, once, under a lock, and shared between requests.

Requests never mutate a shared model: thresholds travel in a per-request shallow copy of the
detector (the weights are shared, the numbers are the request's own).
"""

from __future__ import annotations

import copy
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GROUNDING_DINO = "grounding_dino"
CLIP = "clip"
DETECTOR_KINDS = (GROUNDING_DINO, CLIP)
TINY_SAM = "tiny-random"

# SAM's automatic-mask quality filters drop every mask of an untrained model; the smoke mode
# keeps them all and uses a coarse grid so that it stays fast on a CPU.
TINY_AMG_OPTIONS: dict[str, Any] = {
    "points_per_side": 4,
    "pred_iou_thresh": 0.0,
    "stability_score_thresh": 0.0,
}
DEFAULT_AMG_OPTIONS: dict[str, Any] = {
    "points_per_side": 32,
    "pred_iou_thresh": 0.88,
    "stability_score_thresh": 0.95,
}
# Words the tiny Grounding DINO's vocabulary knows (others become [UNK]; outputs are random
# either way, this only keeps phrases readable).
TINY_WORDS = (
    "ball box triangle orange apple plate cat dog person car cup red blue yellow green "
    "table chair bottle"
).split()


@dataclass(frozen=True)
class ModelStatus:
    """Whether one model the page can use is on disk.

    ``name`` is the registry name (what ``grounded-sam download NAME`` takes); ``role`` is
    ``"sam"``, ``"grounding_dino"`` or ``"clip"``; ``files`` lists the missing paths.
    """

    name: str
    role: str
    present: bool
    files: tuple[str, ...] = ()

    @property
    def command(self) -> str:
        return f"grounded-sam download {self.name}"

    def missing_summary(self) -> str:
        """The missing files, short: one path, or a folder and a count."""
        if len(self.files) <= 1:
            return ", ".join(self.files) or "files"
        parents = {str(Path(f).parent) for f in self.files}
        where = parents.pop() if len(parents) == 1 else "several folders"
        return f"{len(self.files)} files in {where}"

    def message(self) -> str:
        if self.present:
            return f"{self.name}: ready"
        return f"{self.name}: missing {self.missing_summary()}; fetch with `{self.command}`"


class ModelManager:
    """Builds the models the demo needs, lazily and once, and shares them between requests.

    Args:
        tiny_random: use the tiny seeded random models of :mod:`grounded_sam.testing`
            (no files needed; outputs are meaningless).
        device: ``"cpu"``, ``"cuda"`` … (None: CUDA when available).
        models_dir: where checkpoints are (default: the registry's, ``$GROUNDED_SAM_MODELS``
            or ``./models``).
        sam_names: the SAM model types offered (``"vit_b"``, ``"vit_l"``, ``"vit_h"``; their
            registry names are ``sam_vit_b`` …) and SAM 2.1 registry names
            (``"sam2.1_hiera_tiny"`` …).
        grounding_dino: the registry name of the Grounding DINO checkpoint.
        clip: the registry name of the open_clip model.
        fast: build SAM and Grounding DINO with their optimised paths
            (``SamSegmenter(fast=True)``, ``GroundingDinoDetector(fast=True)``: bfloat16 on
            CPUs with AMX/AVX512-BF16, fused kernels; on GPUs SAM's image encoder only; results
            close to, not equal to, the exact default; ``GROUNDED_SAM_FORCE_FP32=1`` keeps
            float32). CLIP is
            unchanged (it scores SAM's masks, which come from the fast segmenter).
    """

    def __init__(
        self,
        *,
        tiny_random: bool = False,
        device: str | None = None,
        models_dir: str | Path | None = None,
        sam_names: Sequence[str] = ("vit_b", "vit_l", "vit_h"),
        grounding_dino: str = "grounding_dino_tiny",
        clip: str = "clip_vit_b32",
        fast: bool = False,
    ) -> None:
        self.tiny_random = bool(tiny_random)
        self.fast = bool(fast)
        self._device = device
        self.models_dir = None if models_dir is None else Path(models_dir)
        self.sam_names = [TINY_SAM] if self.tiny_random else list(sam_names)
        self.grounding_dino_name = grounding_dino
        self.clip_name = clip
        self._models: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    # ------------------------------------------------------------------ descriptions
    @property
    def device(self) -> str:
        if self._device is None:
            from grounded_sam.pipeline import default_device

            self._device = default_device()
        return self._device

    @property
    def default_amg_options(self) -> dict[str, Any]:
        """Automatic-mask options suited to the models (permissive for random weights)."""
        return dict(TINY_AMG_OPTIONS if self.tiny_random else DEFAULT_AMG_OPTIONS)

    def registry_name(self, role: str, sam: str | None = None) -> str:
        """The registry name behind a role: ``"sam"`` (with ``sam`` a model type such as
        ``"vit_b"``: ``"sam_vit_b"``), ``"grounding_dino"`` or ``"clip"``."""
        if role == "sam":
            sam = sam or self.sam_names[0]
            return sam if self.tiny_random or sam.startswith(("sam_", "sam2")) else f"sam_{sam}"
        return self.grounding_dino_name if role == GROUNDING_DINO else self.clip_name

    def status(self) -> list[ModelStatus]:
        """Which of the page's models are on disk (all of them in the tiny random mode)."""
        names = [(self.registry_name("sam", n), "sam") for n in self.sam_names]
        names += [(self.grounding_dino_name, GROUNDING_DINO), (self.clip_name, CLIP)]
        if self.tiny_random:
            return [ModelStatus(n, role, True) for n, role in names]
        out = []
        for name, role in names:
            missing = self._missing(name)
            out.append(ModelStatus(name, role, not missing, tuple(str(p) for p in missing)))
        return out

    def _missing(self, name: str) -> list[Path]:
        from grounded_sam.models import registry

        return registry.missing_files(name, models_dir=self.models_dir)

    def _checked_path(self, name: str) -> tuple[Any, Path]:
        """The registry entry and model path of ``name``; a clear error when files are missing."""
        from grounded_sam.errors import MissingCheckpointError
        from grounded_sam.models import registry

        entry = registry.get_entry(name)
        missing = self._missing(entry.name)
        if missing:
            raise MissingCheckpointError(missing[0], name=entry.name)
        return entry, registry.model_path(entry, models_dir=self.models_dir)

    def loaded(self) -> list[str]:
        """Keys of the models built so far (``"sam:vit_b"``, ``"grounding_dino"``, ``"clip"``)."""
        return sorted(self._models)

    # ------------------------------------------------------------------ lazy, once
    def _once(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()`` the first time ``key`` is asked for; later calls return the same object.

        One lock per key: loading SAM does not wait for CLIP, and two requests asking for the
        same model build it once.
        """
        model = self._models.get(key)
        if model is not None:
            return model
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            model = self._models.get(key)
            if model is None:
                model = build()
                self._models[key] = model
        return model

    def _tmpdir(self) -> Path:
        with self._locks_guard:
            if self._tmp is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="grounded-sam-models-")
        return Path(self._tmp.name)

    def segmenter(self, sam: str | None = None) -> Any:
        """The shared :class:`~grounded_sam.SamSegmenter` for ``sam`` (default: the first)."""
        sam = sam or self.sam_names[0]
        if sam not in self.sam_names:
            raise ValueError(f"unknown SAM model {sam!r}; choose one of {self.sam_names}")

        def build() -> Any:
            from grounded_sam.segmenters.factory import build_segmenter, tiny_segmenter

            if self.tiny_random:
                return tiny_segmenter("sam", seed=0, device=self.device, fast=self.fast)
            entry, path = self._checked_path(self.registry_name("sam", sam))
            return build_segmenter(entry, path, device=self.device, fast=self.fast)

        return self._once(f"sam:{sam}", build)

    def grounding_dino(self) -> Any:
        """The shared :class:`~grounded_sam.GroundingDinoDetector`."""

        def build() -> Any:
            from grounded_sam.detectors.grounding_dino import GroundingDinoDetector

            if self.tiny_random:
                from grounded_sam.testing.grounding_dino import tiny_grounding_dino

                model, processor = tiny_grounding_dino(self._tmpdir() / "gdino", words=TINY_WORDS)
                return GroundingDinoDetector(model.to(self.device), processor, fast=self.fast)
            _, path = self._checked_path(self.grounding_dino_name)
            return GroundingDinoDetector.from_pretrained(path, device=self.device, fast=self.fast)

        return self._once(GROUNDING_DINO, build)

    def clip_detector(self, sam: str | None = None) -> Any:
        """A :class:`~grounded_sam.ClipMaskDetector` over ``sam``'s automatic masks.

        The CLIP model is loaded once; each SAM model gets its own light wrapper around it.
        """
        sam = sam or self.sam_names[0]
        segmenter = self.segmenter(sam)

        def build() -> Any:
            from grounded_sam.detectors.clip_masks import ClipMaskDetector

            if self.tiny_random:
                from grounded_sam.testing.clip import tiny_clip

                model, preprocess, tokenizer = tiny_clip(seed=0)
                return ClipMaskDetector(
                    segmenter,
                    model.to(self.device),
                    preprocess,
                    tokenizer,
                    amg_options=TINY_AMG_OPTIONS,
                    background_prompts=(),  # random CLIP: let every proposal get a class
                )
            entry, path = self._checked_path(self.clip_name)
            return ClipMaskDetector.from_pretrained(
                entry.builder["model_name"],
                path,
                segmenter=segmenter,
                device=self.device,
                model_id=entry.name,
            )

        base = self._once(CLIP, build)
        if base.segmenter is segmenter:
            return base
        return self._once(f"clip:{sam}", lambda: _with(base, segmenter=segmenter))

    def detector(self, kind: str, sam: str | None = None, **options: Any) -> Any:
        """A per-request detector: the shared one with this request's ``options`` (thresholds).

        ``kind`` is ``"grounding_dino"`` (options ``box_threshold``, ``text_threshold``,
        ``top_k``) or ``"clip"`` (``score_threshold``, ``top_k``). Options that are None are
        ignored; each other one is checked (thresholds finite and in [0, 1], ``top_k`` a
        positive integer) and unknown ones are an error. The shared detector is never modified.
        """
        if kind == GROUNDING_DINO:
            base = self.grounding_dino()
        elif kind == CLIP:
            base = self.clip_detector(sam)
        else:
            raise ValueError(f"unknown detector {kind!r}; choose one of {DETECTOR_KINDS}")
        return _with(base, **_detector_options(kind, options))

    def close(self) -> None:
        """Drop the models and delete temporary files (the tiny tokenizer's vocabulary)."""
        self._models.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


_DETECTOR_THRESHOLDS = {
    GROUNDING_DINO: ("box_threshold", "text_threshold"),
    CLIP: ("score_threshold",),
}


def _detector_options(kind: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` without the Nones, each checked as the detector's constructor would."""
    from grounded_sam.service.options import integer, unit_interval

    thresholds = _DETECTOR_THRESHOLDS[kind]
    unknown = sorted(set(options) - {*thresholds, "top_k"})
    if unknown:
        raise ValueError(f"unknown {kind} option(s) {unknown}; allowed: {[*thresholds, 'top_k']}")
    out = {k: unit_interval(k, v) for k, v in options.items() if k in thresholds}
    if options.get("top_k") is not None:
        out["top_k"] = integer("top_k", options["top_k"], low=1)
    return {k: v for k, v in out.items() if v is not None}


def _with(obj: Any, **attrs: Any) -> Any:
    """A shallow copy of ``obj`` with some existing attributes set (weights stay shared).

    Only for values checked first (:func:`_detector_options`): setattr skips the constructor.
    """
    unknown = [k for k in attrs if not hasattr(obj, k)]
    if unknown:
        raise ValueError(f"{type(obj).__name__} has no option(s) {unknown}")
    out = copy.copy(obj)
    for key, value in attrs.items():
        setattr(out, key, value)
    return out
