"""grounded-sam: a text prompt in, instance masks out.

An open-vocabulary detector (Grounding DINO, or SAM's automatic masks scored by CLIP) turns
a prompt such as ``"cat . dog"`` into boxes; Segment Anything turns the boxes into masks.

Importing this package is cheap: it loads no model, reads no file and touches no network.
Every public name below is resolved on first use (PEP 562), so ``import grounded_sam`` does
not even import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Detections": "grounded_sam.types",
    "ImageError": "grounded_sam.errors",
    "CheckpointError": "grounded_sam.errors",
    "MissingCheckpointError": "grounded_sam.errors",
    "PromptError": "grounded_sam.errors",
    "load_image": "grounded_sam.image",
    "SamSegmenter": "grounded_sam.segmenters.sam",
    "ImageEmbedding": "grounded_sam.segmenters.sam",
    "Sam2Segmenter": "grounded_sam.segmenters.sam2",
    "GroundingDinoDetector": "grounded_sam.detectors.grounding_dino",
    "ClipMaskDetector": "grounded_sam.detectors.clip_masks",
    "Pipeline": "grounded_sam.pipeline",
    "auto_label": "grounded_sam.autolabel",
    "merge_shards": "grounded_sam.autolabel",
    "ConfigMismatchError": "grounded_sam.autolabel",
    "label": "grounded_sam.labeling",
    "evaluate": "grounded_sam.evaluation",
}

__all__ = [
    "CheckpointError",
    "ClipMaskDetector",
    "ConfigMismatchError",
    "Detections",
    "GroundingDinoDetector",
    "ImageEmbedding",
    "ImageError",
    "MissingCheckpointError",
    "Pipeline",
    "PromptError",
    "Sam2Segmenter",
    "SamSegmenter",
    "auto_label",
    "evaluate",
    "label",
    "load_image",
    "merge_shards",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'grounded_sam' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from grounded_sam.autolabel import ConfigMismatchError, auto_label, merge_shards
    from grounded_sam.detectors.clip_masks import ClipMaskDetector
    from grounded_sam.detectors.grounding_dino import GroundingDinoDetector
    from grounded_sam.errors import CheckpointError, ImageError, MissingCheckpointError, PromptError
    from grounded_sam.evaluation import evaluate
    from grounded_sam.image import load_image
    from grounded_sam.labeling import label
    from grounded_sam.pipeline import Pipeline
    from grounded_sam.segmenters.sam import ImageEmbedding, SamSegmenter
    from grounded_sam.segmenters.sam2 import Sam2Segmenter
    from grounded_sam.types import Detections
