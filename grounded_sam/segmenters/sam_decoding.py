"""SAM's mask side for ``SamSegmenter``: the fast decoder's binding, logits -> boolean masks.

:func:`fast_decode_fn` binds :func:`grounded_sam.segmenters.fast_decoder.decode_masks` to a
model's mask decoder and a compute dtype (or says to use SAM's own decoder);
:func:`upscale_to_original` brings low-res logits to the original image size;
:func:`binary_masks` upscales low-res logits to the original image a few masks at a time and
thresholds them into one numpy array, so memory stays bounded on large images. torch is
imported inside the functions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    import torch

    from grounded_sam.segmenters.sam_encoding import ImageEmbedding

# Upscaled logits held at once by `segment`, in values (16 Mi float32 = 64 MiB; at least one
# mask of 1024 x 1024): bounds memory on large images without changing any value (upscaling
# is independent per mask) or the speed (measured: 12 to 64 Mi values run alike).
_UPSCALE_BUDGET = 16 * 2**20


def fast_decode_fn(
    decoder: Any, device: torch.device, dtype_setting: Any
) -> Callable[..., tuple[torch.Tensor, torch.Tensor]] | None:
    """The fast decoder bound to ``decoder`` and a dtype, or None for SAM's own decoder.

    None when ``fast_decoder.supports(decoder)`` is False (decoders other than
    segment_anything's ``MaskDecoder``). ``dtype_setting`` ("auto"/None, "fp32", "bf16",
    "fp16" or a ``torch.dtype``) is resolved for ``device`` by
    ``grounded_sam.runtime.resolve_compute_dtype`` now, once. The returned function takes
    ``(features, image_pe, sparse, dense, multimask)`` as SAM's decoder does and returns
    ``low_res_logits`` (B, M, 256, 256) and ``iou_pred`` (B, M), float32.
    """
    from grounded_sam import runtime
    from grounded_sam.segmenters import fast_decoder

    if not fast_decoder.supports(decoder):
        return None
    dtype = runtime.resolve_compute_dtype(dtype_setting, device)

    def decode(
        features: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        multimask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return fast_decoder.decode_masks(
            decoder, features, image_pe, sparse, dense, multimask=multimask, dtype=dtype
        )

    return decode


def upscale_to_original(
    low_res_logits: torch.Tensor, embedding: ImageEmbedding, img_size: int, *, fast: bool
) -> torch.Tensor:
    """(B, M, 256, 256) low-res logits -> (B, M, H, W) float logits at the original size.

    ``img_size``: the image encoder's input side (1024). ``fast`` False:
    ``fast_decoder.upscale_logits_exact`` (SAM's ``postprocess_masks`` bit for bit); True:
    ``fast_decoder.upscale_logits`` (one bilinear resampling straight to (H, W)).
    """
    import torch

    from grounded_sam.segmenters.fast_decoder import upscale_logits, upscale_logits_exact

    upscale = upscale_logits if fast else upscale_logits_exact
    with torch.no_grad():
        return upscale(low_res_logits, embedding.input_size, embedding.original_size, img_size)


def binary_masks(
    upscale: Callable[[torch.Tensor], torch.Tensor],
    low_res: torch.Tensor,
    original_size: tuple[int, int],
    threshold: float,
) -> np.ndarray:
    """(N, 256, 256) logits -> bool (N, H, W) numpy, upscaled a few at a time.

    ``upscale`` maps (n, 1, 256, 256) logits to (n, 1, H, W) float logits at ``original_size``
    (H, W); a pixel is in the mask when its logit is > ``threshold``. At most
    ``_UPSCALE_BUDGET`` upscaled values (and at least one mask) are held at once.
    """
    import torch

    h, w = original_size
    out = np.empty((len(low_res), h, w), dtype=bool)
    step = max(1, _UPSCALE_BUDGET // max(h * w, 1024 * 1024))
    for start in range(0, len(low_res), step):
        logits = upscale(low_res[start : start + step, None])[:, 0]
        if logits.device.type == "cpu":  # threshold straight into the numpy result
            torch.gt(logits, threshold, out=torch.from_numpy(out[start : start + step]))
        else:
            out[start : start + step] = (logits > threshold).cpu().numpy()
    return out
