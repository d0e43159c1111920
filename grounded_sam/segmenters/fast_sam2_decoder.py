"""A faster SAM 2 mask decoder for many prompts on one image: same weights, less repeated work.

:func:`decode_masks` computes what ``sam2``'s ``MaskDecoder.forward`` returns (low-res mask
logits and predicted IoU) for B prompts on one image, the way
:mod:`grounded_sam.segmenters.fast_decoder` does it for SAM; SAM 2's two-way transformer is
SAM's, so that module's attention pieces are used as they are:

- **Image-side work once, not per prompt.** ``sam2`` repeats the (1, 256, 64, 64) embedding
  and its positional encoding B times (``repeat_interleave``), adds the dense prompt to each
  copy and projects 4096 image tokens per prompt; here the first block's image projections
  are computed once and later attentions fold their projections into the few prompt tokens
  (``fast_decoder._token_to_image`` / ``_image_to_token``).
- **The high-resolution skip features added in token order.** SAM 2's upscaling adds the
  stride-8 and stride-4 features (``conv_s1`` / ``conv_s0`` of the encoder's maps) after
  each 2x2 stride-2 transposed convolution. Both convolutions run as matmuls over
  channels-last tokens (they do not overlap), and the two feature maps are permuted once per
  call into the same token order, so they are broadcast-added to every prompt's features
  without building (B, 64, 128, 128) / (B, 32, 256, 256) copies in NCHW.
- **Only the returned masks.** The final attention and hypernetworks run for the IoU token
  and the masks asked for. With one mask per prompt SAM 2 checks the stability of mask 0 and
  falls back to the best of the three others (``dynamic_multimask_via_stability``): here
  the IoU head says which of the three that would be before any mask is computed, and mask 0
  and that one come out of one upscaling pass (two hypernetwork columns, not four).
- **Optional bfloat16/float16 compute** (``dtype``); outputs are float32.

In float32 the results equal ``sam2``'s up to float rounding (sums are reordered); they are
not bit-identical, which is why ``Sam2Segmenter`` keeps the reference path by default. The
object-score token takes part in the attention as in ``sam2``; its logit is not computed
(``SAM2ImagePredictor`` discards it). Check :func:`supports` before calling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from grounded_sam.segmenters.fast_decoder import (
    _act,
    _deconv_as_linear,
    _image_keys,
    _is_2x2_stride_2,
    _lin,
    _norm,
    _SharedImage,
    _token_to_image,
    _unshuffle_into,
    _upscale_step,
)
from grounded_sam.segmenters.fast_decoder import (
    _block as _sam_block,
)

__all__ = ["supports", "decode_masks", "high_res_tokens"]


def supports(decoder: nn.Module) -> bool:
    """True when ``decoder`` is ``sam2``'s ``MaskDecoder`` with the layout used here (high-res
    features on, 2x2 stride-2 upscaling, plain ``Attention`` and ``MLP`` modules)."""
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.transformer import Attention, TwoWayAttentionBlock, TwoWayTransformer
    from sam2.modeling.sam2_utils import MLP

    if type(decoder) is not MaskDecoder or type(decoder.transformer) is not TwoWayTransformer:
        return False
    if not decoder.use_high_res_features:
        return False
    tr = decoder.transformer
    blocks_ok = all(
        type(b) is TwoWayAttentionBlock and type(b.mlp) is MLP and b.mlp.num_layers == 2
        for b in tr.layers
    )
    attns = [tr.final_attn_token_to_image]
    for b in tr.layers:
        attns += [b.self_attn, b.cross_attn_token_to_image, b.cross_attn_image_to_token]
    up = list(decoder.output_upscaling)
    up_ok = len(up) == 5 and all(
        type(up[i]) is nn.ConvTranspose2d and _is_2x2_stride_2(up[i]) for i in (0, 3)
    )
    mlps = [*decoder.output_hypernetworks_mlps, decoder.iou_prediction_head]
    return (
        blocks_ok
        and all(type(a) is Attention and a.kv_in_dim == a.embedding_dim for a in attns)
        and up_ok
        and all(type(m) is MLP for m in mlps)
    )


def _mlp(x: torch.Tensor, mlp: nn.Module) -> torch.Tensor:
    """``sam2.modeling.sam2_utils.MLP`` in x's dtype."""
    for i, layer in enumerate(mlp.layers):
        x = _lin(x, layer)
        if i < mlp.num_layers - 1:
            x = mlp.act(x)
    return torch.sigmoid(x) if mlp.sigmoid_output else x


def _block(
    blk: nn.Module,
    queries: torch.Tensor,
    keys: torch.Tensor | _SharedImage,
    query_pe: torch.Tensor,
    pe: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``TwoWayAttentionBlock`` (SAM's, with SAM 2's MLP); (queries, keys) as there."""
    return _sam_block(blk, queries, keys, query_pe, pe, mlp=_mlp)


def high_res_tokens(
    high_res_features: list[torch.Tensor] | tuple[torch.Tensor, ...], dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The stride-4 and stride-8 features in the token order of the upscaling matmuls.

    Args:
        high_res_features: ``feat_s0`` (1, C/8, 4h, 4w) and ``feat_s1`` (1, C/4, 2h, 2w),
            as ``Sam2Embedding.high_res_feats`` holds them.

    Returns:
        s0 (h*w*16, C/8): row (i, j, ky1, kx1, ky2, kx2) holds pixel
        (4i + 2 ky1 + ky2, 4j + 2 kx1 + kx2); s1 (h*w*4, C/4): row (i, j, ky, kx) holds pixel
        (2i + ky, 2j + kx); contiguous, in ``dtype``.
    """
    feat_s0, feat_s1 = high_res_features
    c8, hh, ww = feat_s0.shape[1:]
    h, w = hh // 4, ww // 4
    s0 = feat_s0[0].to(dtype).view(c8, h, 2, 2, w, 2, 2).permute(1, 4, 2, 5, 3, 6, 0)
    c4 = feat_s1.shape[1]
    s1 = feat_s1[0].to(dtype).view(c4, h, 2, w, 2).permute(1, 3, 2, 4, 0)
    return s0.reshape(-1, c8), s1.reshape(-1, c4)


def _mask_logits(
    decoder: nn.Module,
    src: torch.Tensor,
    hyper: torch.Tensor,
    linears: tuple,
    s0: torch.Tensor,
    s1: torch.Tensor,
) -> torch.Tensor:
    """SAM 2's ``output_upscaling`` with the high-res features, then the hypernetwork product.

    src: (b, L, C) image tokens after the transformer; hyper: (b, M, C/8); linears: the two
    transposed convolutions as ``F.linear`` pairs; s0, s1: :func:`high_res_tokens`. Returns
    (b, L*16, M) logits in ``fast_decoder._unshuffle_into`` order.
    """
    _, ln, act1, up2, act2 = decoder.output_upscaling
    b, length, c = src.shape
    y = F.linear(src.reshape(-1, c), *linears[0]).view(b, length * 4, -1)  # (b, 4L, C/4)
    y = _act(act1, _norm(y.add_(s1), ln))
    y = F.linear(y, *linears[1]).view(b, length * 16, up2.out_channels)  # (b, 16L, C/8)
    y = _act(act2, y.add_(s0))
    return torch.bmm(y, hyper.transpose(1, 2))


def _stability(logits: torch.Tensor, delta: float) -> torch.Tensor:
    """``MaskDecoder._get_stability_scores`` of (B, h, w) logits -> (B,)."""
    flat = logits.flatten(1)
    area_i = (flat > delta).sum(-1).float()
    area_u = (flat > -delta).sum(-1).float()
    return torch.where(area_u > 0, area_i / area_u.clamp(min=1), 1.0)


@torch.no_grad()
def decode_masks(
    decoder: nn.Module,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse_prompt_embeddings: torch.Tensor,
    dense_prompt_embeddings: torch.Tensor,
    high_res_features: list[torch.Tensor] | tuple[torch.Tensor, ...],
    *,
    multimask: bool,
    dtype: torch.dtype = torch.float32,
    upscale_chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``decoder(...)[:2]`` (``sam2``'s ``MaskDecoder.forward``, eval mode) for B prompts, faster.

    Args:
        decoder: a ``sam2`` ``MaskDecoder`` for which :func:`supports` is True.
        image_embeddings: (1, C, h, w) float, ``Sam2Embedding.image_embed``.
        image_pe: (1, C, h, w), ``sam_prompt_encoder.get_dense_pe()``.
        sparse_prompt_embeddings: (B, N, C) point/box embeddings.
        dense_prompt_embeddings: (B, C, h, w); batch 1 or a stride-0 broadcast (the prompt
            encoder's output without ``mask_input``) is shared by all prompts.
        high_res_features: ``Sam2Embedding.high_res_feats``, (1, C/8, 4h, 4w) and
            (1, C/4, 2h, 2w).
        multimask: the three multimask outputs instead of one mask (which, with
            ``dynamic_multimask_via_stability``, is mask 0 or, where that is unstable, the
            best of the three by predicted IoU).
        dtype: compute dtype (float32, bfloat16 or float16).
        upscale_chunk: prompts upscaled together (default: as many as fit in
            ``fast_decoder.UPSCALE_BYTES``).

    Returns:
        low-res mask logits float32 (B, M, 4h, 4w) and predicted IoU float32 (B, M),
        M = 3 if ``multimask`` else 1.
    """
    step = _upscale_step(decoder, image_embeddings, dtype, upscale_chunk)
    bsz = sparse_prompt_embeddings.shape[0]
    _, c, h, w = image_embeddings.shape
    tr = decoder.transformer
    pe, keys = _image_keys(tr, image_embeddings, image_pe, dense_prompt_embeddings, bsz, dtype)

    first = 1 if decoder.pred_obj_scores else 0  # the IoU token's index
    parts = [decoder.iou_token.weight, decoder.mask_tokens.weight]
    if decoder.pred_obj_scores:
        parts.insert(0, decoder.obj_score_token.weight)
    output_tokens = torch.cat(parts, dim=0)
    tokens = torch.cat(
        (output_tokens.expand(bsz, -1, -1), sparse_prompt_embeddings.to(output_tokens.dtype)),
        dim=1,
    ).to(dtype)
    queries = tokens
    for blk in tr.layers:
        queries, keys = _block(blk, queries, keys, tokens, pe)
    assert isinstance(keys, torch.Tensor)

    n_multi = decoder.num_multimask_outputs
    dynamic = not multimask and decoder.dynamic_multimask_via_stability
    masks = list(range(1, 1 + n_multi)) if multimask or dynamic else []
    masks = [0, *masks] if not multimask else masks  # mask-token indices through final attn
    sel = torch.tensor([first] + [first + 1 + m for m in masks], device=tokens.device)
    q = queries[:, sel]
    hs = _norm(
        q + _token_to_image(tr.final_attn_token_to_image, q + tokens[:, sel], keys, pe),
        tr.norm_final_attn,
    )
    iou_all = _mlp(hs[:, 0], decoder.iou_prediction_head).float()  # (B, 1 + n_multi)
    mask_hs = {m: hs[:, 1 + k] for k, m in enumerate(masks)}

    def hyper_of(m: int, rows: torch.Tensor | None = None) -> torch.Tensor:
        x = mask_hs[m] if rows is None else mask_hs[m][rows]
        return _mlp(x, decoder.output_hypernetworks_mlps[m])

    if multimask:
        hyper = torch.stack([hyper_of(m) for m in masks], dim=1)  # (B, 3, C/8)
        iou = iou_all[:, 1:]
    elif dynamic:
        best = iou_all[:, 1:].argmax(dim=1)  # the fallback mask per prompt, 0..2
        fallback = torch.empty((bsz, c // 8), dtype=dtype, device=tokens.device)
        for k in range(n_multi):
            rows = (best == k).nonzero().flatten()
            if len(rows):
                fallback[rows] = hyper_of(1 + k, rows).to(dtype)
        hyper = torch.stack([hyper_of(0), fallback], dim=1)  # (B, 2, C/8)
        iou = iou_all
    else:
        hyper = hyper_of(0)[:, None]
        iou = iou_all[:, :1]

    linears = tuple(_deconv_as_linear(decoder.output_upscaling[i], dtype) for i in (0, 3))
    s0, s1 = high_res_tokens(high_res_features, dtype)
    low = torch.empty((bsz, hyper.shape[1], 4 * h, 4 * w), device=tokens.device)
    for start in range(0, bsz, step):
        part = slice(start, start + step)
        logits = _mask_logits(decoder, keys[part], hyper[part], linears, s0, s1)
        _unshuffle_into(low[part], logits)
    if not dynamic:
        return low, iou
    rows = torch.arange(bsz, device=low.device)
    stable = _stability(low[:, 0], decoder.dynamic_multimask_stability_delta) >= (
        decoder.dynamic_multimask_stability_thresh
    )
    low = torch.where(stable[:, None, None], low[:, 0], low[:, 1])[:, None]
    iou = torch.where(stable, iou[:, 0], iou[rows, 1 + best])[:, None]
    return low, iou
