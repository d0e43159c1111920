"""A tiny, seeded, random open_clip model for tests: real open_clip code, no download.

open_clip builds models from named architecture configs; :func:`register_tiny_clip_config`
adds one more (a 2-layer ViT on 32x32 images and a 2-layer text transformer) through
``open_clip.add_model_config``. The tokenizer is open_clip's own BPE tokenizer, whose vocabulary
ships inside the package, so everything works offline.
"""

from __future__ import annotations

import json
import tempfile
import threading
from pathlib import Path
from typing import Any

TINY_CLIP_NAME = "gs-tiny-clip"

TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {
        "image_size": 32,
        "layers": 2,
        "width": 32,
        "head_width": 16,
        "patch_size": 8,
    },
    "text_cfg": {
        "context_length": 16,
        "vocab_size": 49408,  # open_clip's bundled BPE vocabulary
        "width": 32,
        "heads": 2,
        "layers": 2,
    },
}

_lock = threading.Lock()
_config_dir: tempfile.TemporaryDirectory[str] | None = None


def register_tiny_clip_config() -> str:
    """Register :data:`TINY_CLIP_CONFIG` with open_clip under :data:`TINY_CLIP_NAME` (once per process).

    Returns the model name to pass to ``open_clip.create_model_and_transforms`` /
    ``open_clip.get_tokenizer``.
    """
    global _config_dir
    import open_clip

    with _lock:
        if open_clip.get_model_config(TINY_CLIP_NAME) is None:
            # open_clip reads configs from JSON files in registered folders; the folder lives
            # as long as the process (open_clip keeps the parsed config after the scan anyway).
            _config_dir = tempfile.TemporaryDirectory(prefix="gs-tiny-clip-")
            path = Path(_config_dir.name) / f"{TINY_CLIP_NAME}.json"
            path.write_text(json.dumps(TINY_CLIP_CONFIG))
            open_clip.add_model_config(path)
    return TINY_CLIP_NAME


def tiny_clip(seed: int = 0) -> tuple[Any, Any, Any]:
    """``(model, preprocess, tokenizer)`` like ``open_clip.create_model_and_transforms`` returns.

    ``model`` is an ``open_clip.CLIP`` in eval mode with seeded random weights (embed dim 32);
    ``preprocess`` is open_clip's evaluation transform (PIL image -> float32 (3, 32, 32));
    ``tokenizer`` is open_clip's BPE tokenizer (list[str] -> int64 (B, 16)).
    """
    import open_clip
    import torch

    name = register_tiny_clip_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    model.eval()
    tokenizer = open_clip.get_tokenizer(name)
    return model, preprocess, tokenizer
