"""The demo's models: built lazily, once, under a lock, and shared between requests.

Models are built by :mod:`grounded_sam.models.build`; this module only caches them. Requests
never mutate a shared model: thresholds travel in the detector's ``with_options`` copy (the
weights are shared, the options are the request's own, checked as the constructor checks).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grounded_sam.models.build import CLIP, DETECTOR_KINDS, GROUNDING_DINO, TINY_AMG_OPTIONS
from grounded_sam.models.registry import SAM_MODEL_TYPES
from grounded_sam.precision import UNSET, Precision, from_legacy

TINY_SAM = "tiny-random"

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

    Building is :mod:`grounded_sam.models.build`'s; this class keeps the built models, one
    lock per model, and what the page shows about them.

    Args:
        tiny_random: use the tiny seeded random models of :mod:`grounded_sam.testing`
            (no files needed; outputs are meaningless).
        device: ``"cpu"``, ``"cuda"`` … (None: CUDA when available).
        models_dir: where checkpoints are (default: the registry's, ``$GROUNDED_SAM_MODELS``
            or ``./models``).
        sam_names: the SAM model types offered (default the registry's
            ``SAM_MODEL_TYPES``, ``"vit_b"``, ``"vit_l"``, ``"vit_h"``: registry names
            ``sam_vit_b`` …) and SAM 2.1 registry names (``"sam2.1_hiera_tiny"`` …).
        grounding_dino: the registry name of the Grounding DINO checkpoint.
        clip: the registry name of the open_clip model.
        precision: SAM's and Grounding DINO's: ``"exact"`` (default), ``"fast"``,
            ``"fast-bf16"`` … (:mod:`grounded_sam.precision`). CLIP is unchanged (it scores
            SAM's masks, which come from the fast segmenter). ``fast=True`` is the deprecated
            ``precision="fast"``.
    """

    def __init__(
        self,
        *,
        tiny_random: bool = False,
        device: str | None = None,
        models_dir: str | Path | None = None,
        sam_names: Sequence[str] = SAM_MODEL_TYPES,
        grounding_dino: str = "grounding_dino_tiny",
        clip: str = "clip_vit_b32",
        precision: str | Precision | None = None,
        fast: Any = UNSET,
    ) -> None:
        self.tiny_random = bool(tiny_random)
        self.precision = from_legacy(precision, owner="ModelManager", fast=fast)
        self._device = device
        self.models_dir = None if models_dir is None else Path(models_dir)
        self.sam_names = [TINY_SAM] if self.tiny_random else list(sam_names)
        self.grounding_dino_name = grounding_dino
        self.clip_name = clip
        self._models: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # ------------------------------------------------------------------ descriptions
    @property
    def fast(self) -> bool:
        """Whether SAM and Grounding DINO run their optimised paths."""
        return self.precision.fast

    @property
    def device(self) -> str:
        if self._device is None:
            from grounded_sam.models.build import default_device

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
        from grounded_sam.models import registry

        out = []
        for name, role in names:
            missing = registry.missing_files(name, models_dir=self.models_dir)
            out.append(ModelStatus(name, role, not missing, tuple(str(p) for p in missing)))
        return out

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

    def _where(self) -> dict[str, Any]:
        """The factory arguments every model of this manager shares."""
        return {"device": self.device, "precision": self.precision}

    def segmenter(self, sam: str | None = None) -> Any:
        """The shared :class:`~grounded_sam.SamSegmenter` for ``sam`` (default: the first)."""
        sam = sam or self.sam_names[0]
        if sam not in self.sam_names:
            raise ValueError(f"unknown SAM model {sam!r}; choose one of {self.sam_names}")

        def build() -> Any:
            from grounded_sam.models import build

            if self.tiny_random:
                return build.tiny_segmenter("sam", **self._where())
            return build.segmenter(sam, models_dir=self.models_dir, **self._where())

        return self._once(f"sam:{sam}", build)

    def grounding_dino(self) -> Any:
        """The shared :class:`~grounded_sam.GroundingDinoDetector`."""

        def build() -> Any:
            from grounded_sam.models import build

            if self.tiny_random:
                return build.tiny_detector(GROUNDING_DINO, words=TINY_WORDS, **self._where())
            name = self.grounding_dino_name
            return build.detector(name, models_dir=self.models_dir, **self._where())

        return self._once(GROUNDING_DINO, build)

    def clip_detector(self, sam: str | None = None) -> Any:
        """A :class:`~grounded_sam.ClipMaskDetector` over ``sam``'s automatic masks.

        The CLIP model is loaded once; each SAM model gets its own light wrapper around it.
        """
        sam = sam or self.sam_names[0]
        segmenter = self.segmenter(sam)

        def build() -> Any:
            from grounded_sam.models import build

            if self.tiny_random:
                return build.tiny_detector(CLIP, segmenter=segmenter, device=self.device)
            return build.detector(
                self.clip_name, segmenter=segmenter, device=self.device, models_dir=self.models_dir
            )

        base = self._once(CLIP, build)
        if base.segmenter is segmenter:
            return base
        return self._once(f"clip:{sam}", lambda: base.with_segmenter(segmenter))

    def detector(self, kind: str, sam: str | None = None, **options: Any) -> Any:
        """A per-request detector: the shared one with this request's ``options``.

        ``kind`` is ``"grounding_dino"`` (options ``box_threshold``, ``text_threshold``,
        ``top_k`` …) or ``"clip"`` (``score_threshold``, ``top_k`` …). Options that are None
        are ignored; the others go through the detector's ``with_options``, the check its
        constructor runs (``box_threshold=5`` is a ValueError naming the range; an option it
        does not have is a ValueError listing those it has). The shared detector is never
        modified.
        """
        if kind == GROUNDING_DINO:
            base = self.grounding_dino()
        elif kind == CLIP:
            base = self.clip_detector(sam)
        else:
            raise ValueError(f"unknown detector {kind!r}; choose one of {DETECTOR_KINDS}")
        return base.with_options(**{k: v for k, v in options.items() if v is not None})

    def close(self) -> None:
        """Drop the models."""
        self._models.clear()
