"""A faster SAM mask decoder for many prompts on one image: same weights, less repeated work.

:func:`decode_masks` computes what ``segment_anything``'s ``MaskDecoder`` computes for B
prompts on one image embedding, and :func:`upscale_logits` what ``Sam.postprocess_masks``
does, with these changes:

- **Nothing image-only is done per prompt.** The reference repeats the image embedding and
  its positional encoding B times and projects all 4096 image tokens B times. Here, while
  the image tokens are the same for every prompt (the first two-way block, when no
  ``mask_input`` is given), their key/value/query projections are computed once and every
  prompt attends to them in one batched call.
- **Projections folded into the few prompt tokens.** Once the image tokens differ per
  prompt, an attention between 4096 image tokens and T ~ 7 prompt tokens is computed without
  projecting the image tokens: ``q . (W_k x + b_k) = (W_k^T q) . x + const`` and
  ``sum_i a_i (W_v x_i + b_v) = W_v (sum_i a_i x_i) + b_v`` (softmax rows sum to 1), and the
  same for the image-to-token direction with ``W_q`` and ``W_out``. This costs heads * T
  instead of 128 multiply-adds per image token and channel, so it is used when
  heads * T < internal dim (8 * 7 = 56 < 128 for box prompts). The positional encoding is
  added through a second product with the shared encoding instead of a (B, 4096, 256) sum.
- **The final attention only for the tokens that are returned** (the IoU token and the mask
  tokens of the requested masks), and the hypernetwork only for those masks.
- **Transposed convolutions as matmuls** over channels-last tokens: the 2x2 stride-2
  upscaling convolutions do not overlap, so each is one matmul; the pixel shuffle is done
  once, on the (B, M, 256, 256) mask logits instead of on 64- and 32-channel features.
- **One resampling to the original size** (:func:`upscale_logits`): the valid (unpadded)
  region of the 256x256 logits is resampled straight to (H, W), instead of 256 -> 1024 ->
  crop -> (H, W). Masks agree with the reference except along their edges.
  :func:`upscale_logits_exact` is SAM's two resamplings bit for bit, minus the padding.
- **Optional bfloat16/float16 compute** (``dtype``); softmax and layer norms keep float32
  accumulation, outputs are float32.

In float32 the results equal the reference up to float rounding (the sums are reordered);
they are not bit-identical. ``SamSegmenter`` keeps the reference path as its default.
Decoders that are not exactly segment_anything's ``MaskDecoder`` / ``TwoWayTransformer``
(e.g. subclasses with another forward) are not supported: check :func:`supports` first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d, MLPBlock
from segment_anything.modeling.mask_decoder import MLP, MaskDecoder
from segment_anything.modeling.transformer import (
    Attention,
    TwoWayAttentionBlock,
    TwoWayTransformer,
)
from torch import nn

__all__ = [
    "supports",
    "decode_masks",
    "upscale_logits",
    "upscale_logits_exact",
    "UPSCALE_BYTES",
]

# Bytes of upscaled mask features computed at once. Each prompt has (256 x 256, 32) of
# them (8 MiB in float32, 4 MiB in bfloat16); staying below glibc's 32 MiB mmap threshold
# lets their memory be reused instead of mapped and page-faulted afresh on every call.
UPSCALE_BYTES = 24 * 2**20


def supports(decoder: nn.Module) -> bool:
    """True when ``decoder`` is segment_anything's ``MaskDecoder`` with the layout used here."""
    if type(decoder) is not MaskDecoder or type(decoder.transformer) is not TwoWayTransformer:
        return False
    tr = decoder.transformer
    blocks_ok = all(type(b) is TwoWayAttentionBlock and type(b.mlp) is MLPBlock for b in tr.layers)
    attns = [tr.final_attn_token_to_image]
    for b in tr.layers:
        attns += [b.self_attn, b.cross_attn_token_to_image, b.cross_attn_image_to_token]
    up = list(decoder.output_upscaling)
    up_ok = (
        len(up) == 5
        and all(type(up[i]) is nn.ConvTranspose2d for i in (0, 3))
        and type(up[1]) is LayerNorm2d
        and all(_is_2x2_stride_2(up[i]) for i in (0, 3))
    )
    mlps = [*decoder.output_hypernetworks_mlps, decoder.iou_prediction_head]
    return (
        blocks_ok
        and all(type(a) is Attention for a in attns)
        and up_ok
        and all(type(m) is MLP for m in mlps)
    )


def _is_2x2_stride_2(conv: nn.ConvTranspose2d) -> bool:
    return (
        conv.kernel_size == (2, 2)
        and conv.stride == (2, 2)
        and conv.padding == (0, 0)
        and conv.output_padding == (0, 0)
        and conv.dilation == (1, 1)
        and conv.groups == 1
    )


# ---------------------------------------------------------------------- small pieces
def _lin(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    b = layer.bias.to(x.dtype) if layer.bias is not None else None
    return F.linear(x, layer.weight.to(x.dtype), b)


def _norm(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    """nn.LayerNorm or LayerNorm2d over the last dimension, in x's dtype."""
    w, b = norm.weight.to(x.dtype), norm.bias.to(x.dtype)
    return F.layer_norm(x, (x.shape[-1],), w, b, norm.eps)


def _mlp(x: torch.Tensor, mlp: MLP) -> torch.Tensor:
    for i, layer in enumerate(mlp.layers):
        x = _lin(x, layer)
        if i < mlp.num_layers - 1:
            x = F.relu(x)
    return torch.sigmoid(x) if mlp.sigmoid_output else x


def _heads(a: Attention) -> tuple[int, int]:
    return a.num_heads, a.internal_dim // a.num_heads


def _small_attention(
    a: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
) -> torch.Tensor:
    """``Attention`` for short sequences (prompt tokens): (B, T, C) each -> (B, T, C)."""
    heads, d = _heads(a)
    b, t = q.shape[:2]

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(b, x.shape[1], heads, d).transpose(1, 2)

    q, k, v = split(_lin(q, a.q_proj)), split(_lin(k, a.k_proj)), split(_lin(v, a.v_proj))
    o = F.scaled_dot_product_attention(q, k, v)
    return _lin(o.transpose(1, 2).reshape(b, t, heads * d), a.out_proj)


# ---------------------------------------------------------------------- shared image work
@dataclass(frozen=True)
class _SharedImage:
    """The first block's image-side projections, computed once for every prompt.

    keys: (1, L, C) image tokens (embedding + the no-mask dense embedding); k, v: (h, L, d)
    the token-to-image keys and values; q: (h, L, d) the image-to-token queries.
    """

    keys: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    q: torch.Tensor


def _share_image(blk: TwoWayAttentionBlock, keys: torch.Tensor, pe: torch.Tensor) -> _SharedImage:
    t2i, i2t = blk.cross_attn_token_to_image, blk.cross_attn_image_to_token
    x = keys[0] + pe[0]

    def heads(t: torch.Tensor, a: Attention) -> torch.Tensor:
        h, d = _heads(a)
        return t.view(-1, h, d).transpose(0, 1)

    return _SharedImage(
        keys=keys,
        k=heads(_lin(x, t2i.k_proj), t2i),
        v=heads(_lin(keys[0], t2i.v_proj), t2i),
        q=heads(_lin(x, i2t.q_proj), i2t),
    )


# ---------------------------------------------------------------------- token -> image
def _token_to_image(
    a: Attention, q_in: torch.Tensor, keys: torch.Tensor | _SharedImage, pe: torch.Tensor
) -> torch.Tensor:
    """Prompt tokens attend to image tokens: ``a(q=q_in, k=keys + pe, v=keys)``.

    q_in: (b, T, C); keys: (b, L, C), or the shared first-block image work; pe: (1, L, C).
    Returns (b, T, C).
    """
    heads, d = _heads(a)
    bsz, t, c = q_in.shape
    q = _lin(q_in, a.q_proj)  # (b, T, D)
    if isinstance(keys, _SharedImage):
        # all b*T queries attend to the same projected image tokens in one call
        qh = q.view(bsz * t, heads, d).transpose(0, 1)  # (h, b*T, d)
        o = F.scaled_dot_product_attention(qh, keys.k, keys.v)  # (h, b*T, d)
        return _lin(o.transpose(0, 1).reshape(bsz, t, heads * d), a.out_proj)
    if heads * t >= a.internal_dim:  # folding would cost more than projecting
        k = _lin(keys + pe, a.k_proj).view(bsz, -1, heads, d).transpose(1, 2)
        v = _lin(keys, a.v_proj).view(bsz, -1, heads, d).transpose(1, 2)
        o = F.scaled_dot_product_attention(q.view(bsz, t, heads, d).transpose(1, 2), k, v)
        return _lin(o.transpose(1, 2).reshape(bsz, t, heads * d), a.out_proj)
    # Folded: W_k^T q (scaled) in image channels, (b, h*T, C); the key bias adds a constant
    # per query, which softmax ignores.
    wk = a.k_proj.weight.to(q.dtype).view(heads, d, c)
    qf = torch.einsum("bthd,hdc->bhtc", q.view(bsz, t, heads, d), wk) / math.sqrt(d)
    qf = qf.reshape(bsz, heads * t, c)
    scores = torch.matmul(qf, pe[0].T)  # (b, h*T, L): the positional part, one matmul
    scores.baddbmm_(qf, keys.transpose(1, 2))
    attn = torch.softmax(scores, dim=-1)
    z = torch.bmm(attn, keys).view(bsz, heads, t, c)  # attention-weighted raw image tokens
    wv = a.v_proj.weight.to(q.dtype).view(heads, d, c)
    o = torch.einsum("bhtc,hdc->bthd", z, wv).reshape(bsz, t, heads * d)
    if a.v_proj.bias is not None:
        o = o + a.v_proj.bias.to(o.dtype)
    return _lin(o, a.out_proj)


# ---------------------------------------------------------------------- image -> token
def _image_to_token(
    a: Attention,
    keys: torch.Tensor | _SharedImage,
    pe: torch.Tensor,
    k_in: torch.Tensor,
    v_in: torch.Tensor,
) -> torch.Tensor:
    """Image tokens attend to prompt tokens, plus the residual: ``keys + a(keys + pe, k_in, v_in)``.

    keys: (b, L, C) (updated in place and returned) or the shared first-block image work;
    pe: (1, L, C); k_in, v_in: (b, T, C). Returns (b, L, C), before ``norm4``.
    """
    heads, d = _heads(a)
    bsz, t, c = k_in.shape
    dt = k_in.dtype
    k = _lin(k_in, a.k_proj).view(bsz, t, heads, d)
    v = _lin(v_in, a.v_proj).view(bsz, t, heads, d)
    # The output projection folded into the values, W_out[:, head] v, (b, h*T, C). Each
    # head's attention sums to 1, so out_proj's bias / heads on every row adds the bias once.
    wo = a.out_proj.weight.to(dt).view(c, heads, d)
    vf = torch.einsum("bthd,chd->bhtc", v, wo)
    if a.out_proj.bias is not None:
        vf = vf + a.out_proj.bias.to(dt) / heads
    vf = vf.reshape(bsz, heads * t, c)
    # Scores are laid out with the image tokens last, so that the softmax over the T ~ 7
    # prompt tokens runs along an outer axis with L contiguous (several times faster than
    # over a last axis of length T), and the output product takes them transposed.
    if isinstance(keys, _SharedImage):
        kt = k.permute(2, 0, 1, 3).reshape(heads, bsz * t, d)  # (h, b*T, d)
        scores = torch.bmm(kt, keys.q.transpose(1, 2)).mul_(1 / math.sqrt(d))  # (h, b*T, L)
        attn = torch.softmax(scores.view(heads, bsz, t, -1), dim=2)
        attn = attn.transpose(0, 1).reshape(bsz, heads * t, -1)
        out = torch.bmm(attn.transpose(1, 2), vf)
        return out.add_(keys.keys)
    # queries folded into the prompt keys: W_q^T k (scaled), (b, h*T, C), and q_proj's bias
    wq = a.q_proj.weight.to(dt).view(heads, d, c)
    kf = (torch.einsum("bthd,hdc->bhtc", k, wq) / math.sqrt(d)).reshape(bsz, heads * t, c)
    scores = torch.matmul(kf, pe[0].T)  # (b, h*T, L): the positional part, one matmul
    if a.q_proj.bias is not None:
        bq = a.q_proj.bias.to(dt).view(heads, d)
        scores += (torch.einsum("bthd,hd->bht", k, bq) / math.sqrt(d)).reshape(bsz, -1, 1)
    scores.baddbmm_(kf, keys.transpose(1, 2))
    attn = torch.softmax(scores.view(bsz, heads, t, -1), dim=2).view(bsz, heads * t, -1)
    return keys.baddbmm_(attn.transpose(1, 2), vf)


def _image_keys(
    tr: nn.Module,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    dense: torch.Tensor,
    bsz: int,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor | _SharedImage]:
    """The two-way transformer's image side for ``bsz`` prompts: (pe (1, L, C), keys).

    ``image_embeddings`` / ``image_pe`` are (1, C, h, w), ``dense`` (1 or bsz, C, h, w). When
    every prompt has the same dense embedding (one row, or broadcast with stride 0) the keys
    are shared (:func:`_share_image`); otherwise (bsz, L, C) tokens in ``dtype``.
    """

    def tokens_of(x: torch.Tensor) -> torch.Tensor:  # (n, C, h, w) -> (n, L, C) contiguous
        return x.to(dtype).flatten(2).transpose(1, 2).contiguous()

    pe = tokens_of(image_pe)
    if (dense.shape[0] == 1 or dense.stride(0) == 0) and len(tr.layers) > 0:
        return pe, _share_image(tr.layers[0], tokens_of(image_embeddings + dense[:1]), pe)
    return pe, tokens_of(image_embeddings + dense).expand(bsz, -1, -1).contiguous()


def _upscale_step(
    decoder: nn.Module,
    image_embeddings: torch.Tensor,
    dtype: torch.dtype,
    upscale_chunk: int | None,
) -> int:
    """Prompts whose masks are upscaled together: ``upscale_chunk``, or as many as fit in
    :data:`UPSCALE_BYTES` (a prompt's upscaled features: 16 h w x C/8 values in ``dtype``).

    Raises:
        ValueError: ``image_embeddings`` is not one image's, (1, C, h, w).
    """
    if image_embeddings.shape[0] != 1:
        raise ValueError(
            f"decode_masks takes the embedding of one image, (1, C, h, w); got "
            f"{tuple(image_embeddings.shape)}"
        )
    _, _, h, w = image_embeddings.shape
    per_prompt = 16 * h * w * decoder.output_upscaling[3].out_channels * dtype.itemsize
    return max(1, int(upscale_chunk or UPSCALE_BYTES // per_prompt))


# ---------------------------------------------------------------------- the decoder
def _sam_mlp(x: torch.Tensor, mlp: nn.Module) -> torch.Tensor:
    """SAM's ``MLPBlock`` (lin1 -> act -> lin2) through :func:`_lin`."""
    return _lin(mlp.act(_lin(x, mlp.lin1)), mlp.lin2)


def _block(
    blk: TwoWayAttentionBlock,
    queries: torch.Tensor,
    keys: torch.Tensor | _SharedImage,
    query_pe: torch.Tensor,
    pe: torch.Tensor,
    mlp: Callable[[torch.Tensor, nn.Module], torch.Tensor] = _sam_mlp,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``TwoWayAttentionBlock``; returns (queries (b, T, C), keys (b, L, C)).

    ``mlp(queries, blk.mlp)`` runs the block's MLP (SAM 2's has its own layer list)."""
    if blk.skip_first_layer_pe:
        queries = _small_attention(blk.self_attn, queries, queries, queries)
    else:
        q = queries + query_pe
        queries = queries + _small_attention(blk.self_attn, q, q, queries)
    queries = _norm(queries, blk.norm1)
    attn = _token_to_image(blk.cross_attn_token_to_image, queries + query_pe, keys, pe)
    queries = _norm(queries + attn, blk.norm2)
    queries = _norm(queries + mlp(queries, blk.mlp), blk.norm3)
    keys = _image_to_token(blk.cross_attn_image_to_token, keys, pe, queries + query_pe, queries)
    return queries, _norm(keys, blk.norm4)


def _mask_logits(
    decoder: MaskDecoder, src: torch.Tensor, hyper: torch.Tensor, linears: tuple
) -> torch.Tensor:
    """``output_upscaling`` and the hypernetwork product as matmuls over channels-last tokens.

    src: (b, L, C) image tokens after the transformer; hyper: (b, M, C/8); linears: the two
    convolutions as ``F.linear`` (weight, bias) pairs (:func:`_deconv_as_linear`). Each 2x2
    stride-2 transposed convolution maps one pixel to 2x2 pixels without overlap, i.e. a
    matmul to 4x the channels. Returns (b, L*16, M) logits, rows ordered token (i, j), first
    conv (ky, kx), second conv (ky, kx); see :func:`_unshuffle_into`.
    """
    up1, ln, act1, up2, act2 = decoder.output_upscaling
    b, length, c = src.shape
    y = F.linear(src.reshape(-1, c), *linears[0])  # (b*L, 4*C4)
    y = _act(act1, _norm(y.view(-1, up1.out_channels), ln))  # (b*L*4, C4)
    y = F.linear(y, *linears[1])  # (b*L*4, 4*C8)
    y = _act(act2, y).view(b, length * 16, up2.out_channels)
    return torch.bmm(y, hyper.transpose(1, 2))


def _deconv_as_linear(
    conv: nn.ConvTranspose2d, dt: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A 2x2 stride-2 ConvTranspose2d as ``F.linear`` weight (4*C_out, C_in) and bias, the
    outputs ordered (ky, kx, c_out)."""
    w = conv.weight.to(dt).permute(2, 3, 1, 0).reshape(-1, conv.in_channels).contiguous()
    return w, None if conv.bias is None else conv.bias.to(dt).repeat(4)


def _act(act: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An elementwise activation module, in place for GELU and ReLU (x is a temporary)."""
    if type(act) is nn.GELU:
        return torch.ops.aten.gelu_(x, approximate=act.approximate)
    if type(act) is nn.ReLU:
        return x.relu_()
    return act(x)


def _unshuffle_into(out: torch.Tensor, logits: torch.Tensor) -> None:
    """Write (b, h*w*16, M) logits in :func:`_mask_logits` order into out (b, M, 4h, 4w)."""
    b, m, h, w = out.shape[0], out.shape[1], out.shape[2] // 4, out.shape[3] // 4
    src = logits.view(b, h, w, 2, 2, 2, 2, m).permute(0, 7, 1, 3, 5, 2, 4, 6)
    out.view(b, m, h, 2, 2, w, 2, 2).copy_(src)  # m, i, ky1, ky2, j, kx1, kx2


@torch.no_grad()
def decode_masks(
    decoder: MaskDecoder,
    image_embeddings: torch.Tensor,
    image_pe: torch.Tensor,
    sparse_prompt_embeddings: torch.Tensor,
    dense_prompt_embeddings: torch.Tensor,
    *,
    multimask: bool,
    dtype: torch.dtype = torch.float32,
    upscale_chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``decoder(...)`` (``MaskDecoder.forward``) for B prompts on one image, faster.

    Args:
        decoder: a ``MaskDecoder`` for which :func:`supports` is True.
        image_embeddings: (1, C, h, w) float, the image encoder's output.
        image_pe: (1, C, h, w), ``prompt_encoder.get_dense_pe()``.
        sparse_prompt_embeddings: (B, N, C) point/box embeddings.
        dense_prompt_embeddings: (B, C, h, w) mask embeddings; batch 1 or a broadcast view
            (stride 0, what the prompt encoder returns without ``mask_input``) is taken as
            the same for every prompt, which is what lets the first block's image work be
            shared.
        multimask: three masks per prompt (tokens 1..3) instead of one (token 0).
        dtype: compute dtype (float32, bfloat16 or float16).
        upscale_chunk: prompts whose masks are upscaled together (default: as many as fit
            in :data:`UPSCALE_BYTES`); the transformer runs all B at once (few large
            operations parallelise best).

    Returns:
        low-res mask logits float32 (B, M, 4h, 4w) and predicted IoU float32 (B, M),
        M = 3 if ``multimask`` else 1.
    """
    step = _upscale_step(decoder, image_embeddings, dtype, upscale_chunk)
    bsz = sparse_prompt_embeddings.shape[0]
    _, c, h, w = image_embeddings.shape
    tr = decoder.transformer
    pe, keys = _image_keys(tr, image_embeddings, image_pe, dense_prompt_embeddings, bsz, dtype)

    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat(
        (output_tokens.expand(bsz, -1, -1), sparse_prompt_embeddings.to(output_tokens.dtype)),
        dim=1,
    ).to(dtype)
    queries = tokens
    for blk in tr.layers:
        queries, keys = _block(blk, queries, keys, tokens, pe)
    assert isinstance(keys, torch.Tensor)

    # the final attention only for the tokens that are used: IoU token + returned masks
    wanted = [0, *range(2, 2 + decoder.num_multimask_outputs)] if multimask else [0, 1]
    sel = torch.tensor(wanted, device=tokens.device)
    q = queries[:, sel]
    hs = _norm(
        q + _token_to_image(tr.final_attn_token_to_image, q + tokens[:, sel], keys, pe),
        tr.norm_final_attn,
    )
    iou = _mlp(hs[:, 0], decoder.iou_prediction_head)
    iou = (iou[:, 1:] if multimask else iou[:, :1]).float()
    hyper = torch.stack(
        [
            _mlp(hs[:, k + 1], decoder.output_hypernetworks_mlps[i - 1])
            for k, i in enumerate(wanted[1:])
        ],
        dim=1,
    )  # (B, M, C/8)

    low = torch.empty((bsz, len(wanted) - 1, 4 * h, 4 * w), device=tokens.device)
    up = decoder.output_upscaling
    linears = (_deconv_as_linear(up[0], dtype), _deconv_as_linear(up[3], dtype))
    for start in range(0, bsz, step):
        part = slice(start, start + step)
        _unshuffle_into(low[part], _mask_logits(decoder, keys[part], hyper[part], linears))
    return low, iou


# ---------------------------------------------------------------------- upscaling
@torch.no_grad()
def upscale_logits_exact(
    low_res: torch.Tensor,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    img_size: int = 1024,
) -> torch.Tensor:
    """``Sam.postprocess_masks``, bit for bit, without upscaling the padding.

    (B, M, 256, 256) low-res logits -> (B, M, H, W). SAM resamples the logits to
    (img_size, img_size), keeps the valid (h, w) = ``input_size`` region and resamples that
    to ``original_size``. Here the first resampling produces only the (h, w) region (from
    the low-res rows and columns it reads, with SAM's scale factor, so every value is
    computed by the same formula) and the second is SAM's. For a 640x480 image this skips
    the 25% of the first resampling that SAM throws away.
    """
    lh, lw = low_res.shape[-2:]
    hin, win = input_size
    # the low-res rows/columns the (h, w) region reads, plus a margin so no clamping differs
    rows = min(lh, math.ceil(hin * lh / img_size) + 2)
    cols = min(lw, math.ceil(win * lw / img_size) + 2)
    # torch copies instead of resampling a side that keeps its length (3 rows -> 3 rows for
    # a 3-pixel-high input), whatever the scale: read one more row (or column) then
    rows += rows == hin and rows < lh
    cols += cols == win and cols < lw
    if rows == hin or cols == win:  # not with SAM's sizes; take SAM's own path
        x = F.interpolate(
            _as_4d(low_res), (img_size, img_size), mode="bilinear", align_corners=False
        )
        x = x[..., :hin, :win]
    else:
        x = _as_4d(low_res[..., :rows, :cols])
        x = torch.ops.aten.upsample_bilinear2d(x, [hin, win], False, img_size / lh, img_size / lw)
    x = F.interpolate(x, original_size, mode="bilinear", align_corners=False)
    return x.reshape(*low_res.shape[:-2], *original_size)


@torch.no_grad()
def upscale_logits(
    low_res: torch.Tensor,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    img_size: int = 1024,
) -> torch.Tensor:
    """(B, M, 256, 256) low-res logits -> (B, M, H, W) logits, one bilinear resampling.

    The reference (``Sam.postprocess_masks``) resamples to (img_size, img_size), crops the
    valid (h, w) = ``input_size`` region and resamples that to ``original_size``. Here the
    valid region of the low-res logits (h / 4 x w / 4 for 256 / 1024, not always whole
    pixels) is resampled straight to (H, W), with pixel centres mapped exactly as a single
    bilinear resize of that region would (``align_corners=False``). The output lacks the
    smoothing of the second resampling, so masks differ from SAM's along their edges.
    """
    lh, lw = low_res.shape[-2:]
    (hin, win), (out_h, out_w) = input_size, original_size
    valid_h, valid_w = hin * lh / img_size, win * lw / img_size  # may be fractional
    rows, cols = math.ceil(valid_h), math.ceil(valid_w)
    x = _as_4d(low_res[..., :rows, :cols])
    # a side that keeps its length would be copied, not resampled at the scale we give:
    # repeat the edge row/column, which changes nothing else (bilinear clamps to the edge)
    grow_h = rows == out_h and valid_h != out_h
    grow_w = cols == out_w and valid_w != out_w
    if grow_h or grow_w:
        x = F.pad(x, (0, int(grow_w), 0, int(grow_h)), mode="replicate")
    x = torch.ops.aten.upsample_bilinear2d(
        x, [out_h, out_w], False, out_h / valid_h, out_w / valid_w
    )
    return x.reshape(*low_res.shape[:-2], out_h, out_w)


def _as_4d(x: torch.Tensor) -> torch.Tensor:
    """(..., h, w) -> (N, 1, h, w) for the 2-D resampling ops (a view when possible)."""
    return x if x.ndim == 4 else x.reshape(-1, 1, *x.shape[-2:])
