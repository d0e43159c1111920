"""A tiny random SAM 2.1 built from ``sam2``'s own modules (``SAM2Base``, Hiera, FpnNeck …).

Same interfaces as the official models: 1024-px input, feature maps of 256², 128² and 64²,
256x256 low-res mask logits, so ``SAM2ImagePredictor``, ``SAM2AutomaticMaskGenerator`` and
:class:`grounded_sam.Sam2Segmenter` run unchanged. Only widths and depths are small: a
five-block Hiera of width 8 and image embeddings of ``d_model`` = 32 channels (official: 256), a mask decoder with an
MLP of 64 and 2 heads (official: 2048 and 8). Encoding an image takes ~1.5 s on 2 CPU cores
(SAM 2 works on 256x256 tokens at the first stage), 16 boxes through the decoder ~0.2 s.
Its masks are meaningless.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from sam2.modeling.sam2_base import SAM2Base

TINY_DECODER_MLP_DIM = 64
TINY_SAM2_CONFIG = {
    "embed_dim": 8,
    "num_heads": 1,
    "stages": (1, 1, 2, 1),
    "global_att_blocks": (3,),
    "window_pos_embed_bkg_spatial_size": (7, 7),
    "d_model": 32,
    "mem_dim": 16,
    "memory_layers": 1,
    "memory_feedforward": 32,
}


def build_tiny_sam2(**config: object) -> SAM2Base:
    """An untrained tiny SAM 2.1 (PyTorch's default initialisation), eval mode, on the CPU.

    ``config`` overrides entries of :data:`TINY_SAM2_CONFIG` (keyword arguments of
    ``grounded_sam.segmenters.sam2_loading.build_sam2_model``).
    """
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.transformer import TwoWayTransformer

    from grounded_sam.segmenters.sam2_loading import build_sam2_model

    model = build_sam2_model(**{**TINY_SAM2_CONFIG, **config})  # type: ignore[arg-type]
    # SAM2Base hard-codes a decoder MLP of 2048 and 8 heads; a narrow one keeps tests fast.
    # The other settings are those SAM2Base._build_sam_heads passes.
    width = model.sam_prompt_embed_dim
    model.sam_mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(
            depth=2, embedding_dim=width, mlp_dim=TINY_DECODER_MLP_DIM, num_heads=2
        ),
        transformer_dim=width,
        iou_head_depth=3,
        iou_head_hidden_dim=32,
        use_high_res_features=model.use_high_res_features_in_sam,
        iou_prediction_use_sigmoid=model.iou_prediction_use_sigmoid,
        pred_obj_scores=model.pred_obj_scores,
        pred_obj_scores_mlp=model.pred_obj_scores_mlp,
        use_multimask_token_for_obj_ptr=model.use_multimask_token_for_obj_ptr,
        **(model.sam_mask_decoder_extra_args or {}),
    )
    return model.eval()


def tiny_sam2(seed: int = 0, **config: object) -> SAM2Base:
    """A seeded tiny SAM 2.1 (see :func:`build_tiny_sam2`); the global torch RNG is untouched.

    Positional embeddings, which Hiera initialises to zero, are filled with small random
    values so that the features depend on where things are in the image.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_tiny_sam2(**config)
        with torch.no_grad():
            model.image_encoder.trunk.pos_embed.normal_(0.0, 0.02)
            model.image_encoder.trunk.pos_embed_window.normal_(0.0, 0.02)
    return model


def tiny_sam2_checkpoint(path: str | Path, seed: int = 0, **config: object) -> Path:
    """Write ``{"model": tiny_sam2(seed, **config).state_dict()}`` (the layout of Meta's SAM 2
    checkpoints) to ``path`` and return it. Load it with
    ``Sam2Segmenter.from_checkpoint("tiny", path, builder=build_tiny_sam2)``."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": tiny_sam2(seed, **config).state_dict()}, path)
    return path
