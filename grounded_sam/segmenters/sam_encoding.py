"""SAM's image side for ``SamSegmenter``: the embedding value, the encoder dtype, the fast encoder.

:func:`encode_image` is ``SamPredictor.set_image``'s arithmetic as a function: resize with
``ResizeLongestSide``, normalise and pad with ``Sam.preprocess``, run the image encoder
(under ``torch.autocast`` for a reduced ``dtype``) and return an :class:`ImageEmbedding`.
torch is imported inside the functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    import numpy as np
    import torch
    from segment_anything.modeling import Sam


@dataclass(frozen=True, eq=False)
class ImageEmbedding:
    """SAM's image embedding of one image, a value (no reference to the segmenter).

    Attributes:
        features: float32 (1, C, 64, 64), the image encoder's output on the segmenter's
            device (C = 256 for vit_b/l/h).
        input_size: (h, w) of the image resized so its long side is 1024, before padding.
        original_size: (H, W) of the original image.
        key: content hash of the image (``grounded_sam.image.image_content_key``).
    """

    features: torch.Tensor
    input_size: tuple[int, int]
    original_size: tuple[int, int]
    key: str


def parse_encoder_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``SamSegmenter``'s ``dtype`` setting -> float32 (for None), bfloat16 or float16.

    Accepts a ``torch.dtype`` or a spelling of ``grounded_sam.runtime.DTYPE_NAMES``
    ("fp32"/"float32"/"float", "bf16"/"bfloat16", "fp16"/"float16"/"half"; any case, optional
    "torch." prefix), not "auto" (None is the default here). Raises ValueError naming the
    accepted spellings.
    """
    import torch

    from grounded_sam.runtime import DTYPE_NAMES

    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        key = dtype.lower().removeprefix("torch.")
        if key not in DTYPE_NAMES:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPE_NAMES)}")
        dtype = getattr(torch, DTYPE_NAMES[key])
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype}")
    return dtype


def fast_encoder_model(sam: Sam, dtype: torch.dtype | None) -> Sam:
    """``sam`` with the optimised image encoder of ``fast_sam.optimize_sam`` (in place).

    ``dtype``: the encoder's compute dtype; None lets it pick the fastest for the device.
    Raises RuntimeError (use ``fast=False``) where ``fast_sam`` is not installed.
    """
    try:
        from grounded_sam.segmenters.fast_sam import optimize_sam
    except ModuleNotFoundError as exc:
        if exc.name != "grounded_sam.segmenters.fast_sam":
            raise
        raise RuntimeError(
            "SamSegmenter(fast=True) needs grounded_sam.segmenters.fast_sam, which "
            "is not available in this installation; use fast=False"
        ) from exc
    optimized = optimize_sam(sam, dtype=dtype)
    return sam if optimized is None else optimized


def check_sam_image_shape(image_size: tuple[int, int], target_length: int) -> None:
    """Refuse an image SAM cannot take: resized to a long side of ``target_length`` (1024),
    its short side would round to 0 pixels (a strip more elongated than 1 : 2 x 1024).

    Raises:
        ImageError: naming the size and the smallest short side allowed for that long side.
    """
    from grounded_sam.errors import ImageError

    h, w = image_size
    short, long = min(h, w), max(h, w)
    if short * target_length * 2 < long:  # ResizeLongestSide rounds short * L / long to 0
        need = math.ceil(long / (2 * target_length))
        raise ImageError(
            f"<{w}x{h} image>",
            f"too elongated for SAM: resized to a long side of {target_length} px its short "
            f"side would be 0 px; the short side must be at least {need} px for a long side of "
            f"{long} px (aspect ratio at most 1:{2 * target_length}); pad or crop it first",
        )


def encode_image(
    sam: Sam,
    transform: Any,
    img: np.ndarray,
    key: str,
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None,
    encoder: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> ImageEmbedding:
    """The :class:`ImageEmbedding` of ``img``, exactly as ``SamPredictor.set_image`` computes it.

    Args:
        sam: the model (its ``image_format``, ``preprocess`` and ``image_encoder``).
        transform: segment_anything's ``ResizeLongestSide`` for the encoder's input size.
        img: RGB uint8 (H, W, 3), as ``grounded_sam.image.load_image`` returns it.
        key: the image's content hash, stored in the embedding.
        device: where the encoder runs.
        autocast_dtype: run the encoder under ``torch.autocast`` in this dtype; None or
            float32 runs it as it is (the fast encoder casts by itself).
        encoder: runs instead of ``sam.image_encoder`` when given (e.g. the OpenVINO
            encoder): float32 (1, 3, S, S) preprocessed pixels -> (1, C, S/16, S/16).

    Returns:
        features float32 (1, C, 64, 64) on ``device``, with the resized and original sizes.
    """
    import torch

    if sam.image_format != "RGB":
        img = img[..., ::-1]
    resized = transform.apply_image(img)
    x = torch.as_tensor(resized, device=device).permute(2, 0, 1).contiguous()[None]
    with torch.no_grad():
        x = sam.preprocess(x)
        if encoder is not None:
            features = encoder(x).to(device)
        elif autocast_dtype is None or autocast_dtype == torch.float32:
            features = sam.image_encoder(x)
        else:
            with torch.autocast(device_type=device.type, dtype=autocast_dtype):
                features = sam.image_encoder(x)
    return ImageEmbedding(
        features=features.float(),
        input_size=(int(resized.shape[0]), int(resized.shape[1])),
        original_size=(int(img.shape[0]), int(img.shape[1])),
        key=key,
    )
