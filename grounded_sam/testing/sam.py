"""A tiny random SAM built from segment_anything's own modules.

Same interfaces as the real ``vit_b/l/h`` models: 1024-px input, a 64x64 image embedding,
256x256 low-res mask logits, so ``SamPredictor``, ``SamAutomaticMaskGenerator`` and
:class:`grounded_sam.SamSegmenter` run unchanged. Only widths and depths are small: the image
embedding has ``prompt_embed_dim`` = 32 channels by default (real SAMs have 256; pass
``prompt_embed_dim=256`` where the width matters), which makes the mask decoder ~8x cheaper.
An encoder call takes ~0.2 s on 2 CPU cores, 16 boxes through the decoder ~0.4 s.
Its masks are meaningless.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from segment_anything.modeling import Sam

IMAGE_SIZE = 1024  # SAM's input side; SamPredictor and the prompt encoder assume 1024 / 16 = 64
PATCH_SIZE = 16
TINY_PROMPT_EMBED_DIM = 32


def build_tiny_sam(
    *,
    embed_dim: int = 32,
    depth: int = 2,
    num_heads: int = 2,
    window_size: int = 4,
    global_attn_indexes: tuple[int, ...] = (1,),
    decoder_mlp_dim: int = 64,
    decoder_heads: int = 2,
    prompt_embed_dim: int = TINY_PROMPT_EMBED_DIM,
) -> Sam:
    """Build an untrained tiny SAM with PyTorch's default initialisation, in eval mode.

    The image encoder is a ``depth``-block ViT of width ``embed_dim`` with windowed attention
    (``window_size`` patches) and global attention in ``global_attn_indexes``; the mask decoder
    is a two-block ``TwoWayTransformer`` of width ``prompt_embed_dim`` with a small MLP. The
    image embedding is (1, prompt_embed_dim, 64, 64).
    """
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    grid = IMAGE_SIZE // PATCH_SIZE
    sam = Sam(
        image_encoder=ImageEncoderViT(
            img_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=2,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=global_attn_indexes,
            window_size=window_size,
            out_chans=prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2,
                embedding_dim=prompt_embed_dim,
                mlp_dim=decoder_mlp_dim,
                num_heads=decoder_heads,
            ),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=64,
        ),
    )
    return sam.eval()


def tiny_sam(seed: int = 0, **config: object) -> Sam:
    """A seeded tiny SAM (see :func:`build_tiny_sam` for ``config``), eval mode, on the CPU.

    The same ``seed`` gives the same weights; the global torch RNG is left untouched.
    Positional embeddings, which SAM initialises to zero, are filled with small random values
    so that the encoder output depends on where things are in the image.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        sam = build_tiny_sam(**config)  # type: ignore[arg-type]
        with torch.no_grad():
            encoder = sam.image_encoder
            if encoder.pos_embed is not None:
                encoder.pos_embed.normal_(0.0, 0.02)
            for block in encoder.blocks:
                if block.attn.use_rel_pos:
                    block.attn.rel_pos_h.normal_(0.0, 0.02)
                    block.attn.rel_pos_w.normal_(0.0, 0.02)
    return sam


def tiny_sam_checkpoint(path: str | Path, seed: int = 0, **config: object) -> Path:
    """Write the state dict of ``tiny_sam(seed, **config)`` to ``path`` (a raw state dict, like
    Meta's SAM checkpoints) and return the path. Load it with
    ``SamSegmenter.from_checkpoint("tiny", path, builder=build_tiny_sam)``."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(tiny_sam(seed, **config).state_dict(), path)
    return path
