"""SAM 2's image side for ``Sam2Segmenter``: the embedding value and the encoder pass.

:func:`encode_image` is ``SAM2ImagePredictor.set_image``'s arithmetic as a function:
``SAM2Transforms`` (to float, resize to a 1024 x 1024 square, ImageNet normalisation),
``SAM2Base.forward_image`` (Hiera + FPN neck, the decoder's two high-resolution projections),
``no_mem_embed`` added to the lowest-resolution map, and the same reshapes (which keep the
channels-last memory layout of the reference, so the decoder's convolutions see identical
tensors). With ``autocast_dtype`` (``Sam2Segmenter(fast=True)`` on a CPU with bf16 kernels)
the same modules run under ``torch.autocast`` and the features are cast back to float32.
torch is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch
    from sam2.modeling.sam2_base import SAM2Base


@dataclass(frozen=True, eq=False)
class Sam2Embedding:
    """SAM 2's features of one image, a value (no reference to the segmenter).

    Attributes:
        image_embed: float32 (1, C, 64, 64), the stride-16 features (C = 256 in the official
            models), with ``no_mem_embed`` added, on the segmenter's device.
        high_res_feats: float32 (1, C/8, 256, 256) and (1, C/4, 128, 128), the stride-4 and
            stride-8 features already projected by the mask decoder's ``conv_s0``/``conv_s1``.
        original_size: (H, W) of the original image.
        key: content hash of the image (``grounded_sam.image.image_content_key``).
    """

    image_embed: torch.Tensor
    high_res_feats: tuple[torch.Tensor, ...]
    original_size: tuple[int, int]
    key: str


def feature_sizes(image_size: int) -> list[tuple[int, int]]:
    """(h, w) of the stride-4, stride-8 and stride-16 maps for a square input of ``image_size``."""
    return [(image_size // s, image_size // s) for s in (4, 8, 16)]


def _to_float32(backbone_out: dict) -> dict:
    """``forward_image``'s output with every feature map and position encoding in float32."""
    return {
        k: [t.float() for t in v] if isinstance(v, list) else v.float()
        for k, v in backbone_out.items()
    }


def encode_image(
    model: SAM2Base,
    transforms: Any,
    img: np.ndarray,
    key: str,
    *,
    device: torch.device,
    autocast_dtype: torch.dtype | None = None,
) -> Sam2Embedding:
    """The :class:`Sam2Embedding` of ``img``, exactly as ``SAM2ImagePredictor.set_image`` computes it.

    (Exactly when ``autocast_dtype`` is None or float32; with ``torch.bfloat16`` or
    ``torch.float16`` Hiera, the FPN neck and the two high-res projections run under
    ``torch.autocast`` on ``device``'s type, and the features are returned as float32.)

    Args:
        model: the ``SAM2Base``.
        transforms: ``sam2.utils.transforms.SAM2Transforms`` for the model's ``image_size``.
        img: RGB uint8 (H, W, 3), as ``grounded_sam.image.load_image`` returns it.
        key: the image's content hash, stored in the embedding.
        device: where the encoder runs.
        autocast_dtype: None (float32, the reference's arithmetic) or a half dtype.
    """
    import torch

    x = transforms(img)[None].to(device)
    half = autocast_dtype not in (None, torch.float32)
    with torch.no_grad():
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=half):
            backbone_out = model.forward_image(x)
        if half:
            backbone_out = _to_float32(backbone_out)
        _, vision_feats, _, _ = model._prepare_backbone_features(backbone_out)
        if model.directly_add_no_mem_embed:
            vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
        sizes = feature_sizes(model.image_size)
        feats = [
            feat.permute(1, 2, 0).view(1, -1, *size)
            for feat, size in zip(vision_feats[::-1], sizes[::-1], strict=True)
        ][::-1]
    return Sam2Embedding(
        image_embed=feats[-1],
        high_res_feats=tuple(feats[:-1]),
        original_size=(int(img.shape[0]), int(img.shape[1])),
        key=key,
    )
