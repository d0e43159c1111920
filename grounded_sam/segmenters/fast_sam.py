"""A faster SAM image encoder: the same weights and the same arithmetic, less memory traffic.

:func:`optimize_sam` changes a built ``segment_anything`` model in place so that its image
encoder (``ImageEncoderViT``) runs

- attention through ``torch.nn.functional.scaled_dot_product_attention`` (flash attention
  on CPU and GPU: the attention matrix is never written to memory), with SAM's decomposed
  relative-position bias ``rel_h[q, kh] + rel_w[q, kw]`` (``add_decomposed_rel_pos``)
  either as an additive ``attn_mask`` (window blocks, 196 keys; global blocks in fp32, in
  query chunks) or, for global blocks in bf16/fp16, folded into the dot product:
  q' = [q * scale, rel_h, rel_w] and k' = [k, one_hot(kh), one_hot(kw)] give
  q'.k' = scale q.k + rel_h[q, kh] + rel_w[q, kw] exactly, so no 4096 x 4096 bias is
  materialised at all;
- window attention without the pad-and-partition copies of the activations: q, k and v are
  computed on the unpadded tokens and cut into windows with one copy (padded tokens get the
  same ``qkv.bias`` they get in SAM, so the result is the same);
- in bfloat16 on CPU: linears through oneDNN with the bias and the exact GELU fused into the
  GEMM; the residual stream and LayerNorms stay in float32;
- the patch embedding and the 1x1 neck convolution as matmuls over channels-last tokens, and
  the neck's channel LayerNorms as ``layer_norm``;
- under ``torch.autocast`` in bfloat16 (or float16 on GPUs) when asked or when "auto" finds
  hardware support, with the output cast back to the weights' dtype (float32).

Only the classes of the encoder's modules change (``module.__class__``): parameters are the
same tensors, ``state_dict()`` keys are unchanged, checkpoints still load, and
:func:`restore_sam` puts the original classes back. ``GROUNDED_SAM_FORCE_FP32=1`` (read on
every forward) runs the optimised path in float32.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.image_encoder import (
    Attention,
    Block,
    ImageEncoderViT,
    PatchEmbed,
    get_rel_pos,
)
from torch import nn

from grounded_sam import fp32_linear, runtime

__all__ = ["optimize_sam", "restore_sam", "is_optimized"]

# Attention over at most this many keys (SAM's 14 x 14 windows: 196) takes the relative-position
# bias as a materialised attn_mask; larger grids (global blocks: 64 x 64) fold it into q and k.
_MASK_MAX_KEYS = 256
# fp32 global attention (mask form) runs this many queries at a time: the mask slice of
# vit_b is then 12 heads x 1024 x 4096 x 4 bytes = 200 MB, not 800 MB.
_FP32_QUERY_CHUNK = 1024


def _rel_pos_terms(
    attn: Attention, q: torch.Tensor, size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's decomposed relative-position terms for queries ``q`` (N, heads, h*w, C).

    Returns rel_h (N, heads, h*w, h) and rel_w (N, heads, h*w, w): the bias of query i on key
    (kh, kw) is ``rel_h[..., i, kh] + rel_w[..., i, kw]`` (``add_decomposed_rel_pos``).
    Batched matmuls, not einsum: einsum picks a contraction order here that copies
    the query 12x over (1.2 s of a 10 s profile).
    """
    h, w = size
    n, heads, _, c = q.shape
    rh = get_rel_pos(h, h, attn.rel_pos_h).to(q.dtype)  # (h, kh, C)
    rw = get_rel_pos(w, w, attn.rel_pos_w).to(q.dtype)  # (w, kw, C)
    r_q = q.reshape(n * heads, h, w, c)
    rel_h = torch.matmul(r_q, rh.transpose(1, 2))  # (NH, h, w, C) @ (h, C, kh)
    rel_w = torch.matmul(r_q.transpose(1, 2), rw.transpose(1, 2))  # (NH, w, h, kw)
    rel_h = rel_h.reshape(n, heads, h * w, h)
    rel_w = rel_w.transpose(1, 2).reshape(n, heads, h * w, w)
    return rel_h, rel_w


def _one_hot_keys(size: tuple[int, int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(h + w, h*w): column j is one-hot of key j's row (first h) and column (last w)."""
    h, w = size
    rows = torch.arange(h, device=device).repeat_interleave(w)
    cols = torch.arange(w, device=device).repeat(h)
    return torch.cat([F.one_hot(rows, h), F.one_hot(cols, w)], 1).t().to(dtype)


def _attend(
    attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Attention of q, k, v (N, heads, L, C) over an h x w grid (L = h*w) -> (N, L, heads, C).

    Measured on vit_b's global blocks (CPU, benchmarks/bench_sam_encoder.py): in bf16 the
    folded form takes ~0.7x the time of SDPA with a materialised bias, in fp32 ~1.6x (fp32
    GEMMs are slow enough that the 3x wider dot products cost more than the mask's
    memory traffic), so fp32 uses the mask, in query chunks that bound its memory. For 14 x 14
    windows the mask is cheaper in both.
    """
    if not attn.use_rel_pos:
        o = F.scaled_dot_product_attention(q, k, v, scale=attn.scale)
        return o.transpose(1, 2)
    if size[0] * size[1] <= _MASK_MAX_KEYS:
        return _attend_masked(attn, q, k, v, size)
    if q.dtype == torch.float32:
        return _attend_masked(attn, q, k, v, size, _FP32_QUERY_CHUNK)
    return _attend_folded(attn, q, k, v, size)


def _attend_folded(
    attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """Rel-pos attention with the bias folded into the dot product -> (N, L, heads, C).

    q' = [q * scale, rel_h, rel_w], k' = [k, one_hot(kh), one_hot(kw)]: q'.k' is SAM's
    biased logit, term for term. SDPA wants v as wide as q and k, so v is zero-padded and
    the extra output columns are dropped: that costs FLOPs, but no L x L tensor is
    written, which is what limits a CPU here.
    """
    n, heads, length, c = q.shape
    rel_h, rel_w = _rel_pos_terms(attn, q, size)
    keys = _one_hot_keys(size, q.dtype, q.device).t()  # (L, h + w)
    extra = keys.shape[1]
    q2 = torch.cat([q * attn.scale, rel_h, rel_w], -1)
    k2 = torch.cat([k, keys.expand(n, heads, length, extra)], -1)
    v2 = F.pad(v, (0, extra))
    o = F.scaled_dot_product_attention(q2, k2, v2, scale=1.0)
    return o[..., :c].transpose(1, 2)


def _attend_masked(
    attn: Attention,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    size: tuple[int, int],
    query_chunk: int | None = None,
) -> torch.Tensor:
    """Rel-pos attention with the bias as SDPA's attn_mask, ``query_chunk`` queries at a
    time (None: all) -> (N, L, heads, C).

    The bias of a chunk is written as one GEMM [rel_h | rel_w] @ one_hot(kh | kw) when
    h + w is small (a broadcast add over 14-long rows is poorly vectorised), else as the
    broadcast add (for 64 x 64 the GEMM's 128-deep dot products would cost more FLOPs
    than the attention itself).
    """
    n, heads, length, c = q.shape
    out = q.new_empty(n, length, heads, c)
    rel_h, rel_w = _rel_pos_terms(attn, q, size)
    keys = None
    if sum(size) <= 32:
        rel_h = torch.cat([rel_h, rel_w], -1)  # (N, heads, L, h + w)
        keys = _one_hot_keys(size, rel_h.dtype, rel_h.device)
    step = length if query_chunk is None else max(1, min(query_chunk, length))
    # One mask buffer for all chunks of the broadcast add (not under autograd): a fresh
    # 200 MB tensor per chunk pays its page faults each time (~18% of a global layer in
    # fp32, measured capped at AVX2 with glibc's default malloc).
    buf = None
    if keys is None and not (torch.is_grad_enabled() and rel_h.requires_grad):
        buf = rel_h.new_empty(n, heads, step, *size)
    for start in range(0, length, step):
        stop = min(start + step, length)
        if keys is not None:  # one 2-D GEMM: (N*heads*chunk, h+w) @ (h+w, L)
            terms = rel_h[:, :, start:stop].reshape(-1, keys.shape[0])
            mask = torch.mm(terms, keys).view(n, heads, stop - start, length)
        elif buf is not None:
            mask = buf[:, :, : stop - start]
            torch.add(rel_h[:, :, start:stop, :, None], rel_w[:, :, start:stop, None, :], out=mask)
            mask = mask.view(n, heads, stop - start, length)
        else:
            mask = rel_h[:, :, start:stop, :, None] + rel_w[:, :, start:stop, None, :]
            mask = mask.reshape(n, heads, stop - start, length)
        o = F.scaled_dot_product_attention(
            q[:, :, start:stop], k, v, attn_mask=mask.to(q.dtype), scale=attn.scale
        )
        out[:, start:stop] = o.transpose(1, 2)
    return out


def _linear(x: torch.Tensor, layer: nn.Linear, gelu: bool = False) -> torch.Tensor:
    """``layer(x)`` (then exact GELU if ``gelu``), fused in oneDNN for CPU bf16 autocast.

    Autocast's linear is a GEMM plus a separate pass that writes the bias (and then a GELU
    pass); oneDNN's linear applies bias and GELU in the GEMM's epilogue (~25% less time
    on the MLP). The weight is cast per call, as autocast does: no persistent copies.
    In float32 on a CPU, :func:`grounded_sam.fp32_linear.linear` (MKL or oneDNN, whichever
    this CPU runs faster); elsewhere (CUDA, no oneDNN) plain ``F.linear`` + ``F.gelu``.
    """
    # Under torch.compile inductor does its own oneDNN fusion (and cannot trace this op);
    # with autograd on, the op has no backward: both use the plain path.
    eager_cpu = x.device.type == "cpu" and not torch.compiler.is_compiling()
    fused = runtime.fused_bf16_linear_op() if eager_cpu and not torch.is_grad_enabled() else None
    if fused is not None and runtime.cpu_autocast_dtype() == torch.bfloat16:
        dt = torch.bfloat16
        bias = None if layer.bias is None else layer.bias.to(dt)
        attr, algo = ("gelu", "none") if gelu else ("none", "")
        return fused(x.to(dt).contiguous(), layer.weight.to(dt), bias, attr, [], algo)
    return fp32_linear.linear(x, layer.weight, layer.bias, "gelu" if gelu else None)


def _mlp(mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """SAM's MLPBlock (lin1 -> act -> lin2) with the exact GELU fused into lin1."""
    act = getattr(mlp, "act", None)
    if not (isinstance(act, nn.GELU) and act.approximate == "none"):
        return mlp(x)
    return _linear(_linear(x, mlp.lin1, gelu=True), mlp.lin2)


class _FastAttention(Attention):
    """SAM's ``Attention`` with SDPA; same parameters. Input/output (B, H, W, dim)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = _linear(x, self.qkv).reshape(b, h * w, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, L, C), strided
        o = _attend(self, q, k, v, (h, w))  # (B, L, heads, C)
        return _linear(o.reshape(b, h, w, -1), self.proj)

    def forward_windowed(self, x: torch.Tensor, ws: int) -> torch.Tensor:
        """Window attention over (B, H, W, dim) tokens, windows of ws x ws -> (B, H, W, dim).

        Equal to SAM's window_partition -> Attention -> window_unpartition: the tokens SAM
        pads with zeros after norm1 would have q, k, v = qkv.bias, so that is what the
        padded positions get here, without computing qkv for them.
        """
        b, h, w, dim = x.shape
        heads, c = self.num_heads, dim // self.num_heads
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        qkv = _linear(x, self.qkv)  # (B, H, W, 3*dim)
        if (hp, wp) != (h, w):
            padded = qkv.new_empty(b, hp, wp, 3 * dim)
            bias = self.qkv.bias
            fill = bias.to(qkv.dtype) if bias is not None else qkv.new_zeros(())
            padded[:, h:] = fill
            padded[:, :h, w:] = fill
            padded[:, :h, :w] = qkv
            qkv = padded
        nh, nw = hp // ws, wp // ws
        # (B, nh, ws, nw, ws, 3, heads, C) -> (3, B*nh*nw, heads, ws*ws, C): one copy
        qkv = qkv.view(b, nh, ws, nw, ws, 3, heads, c).permute(5, 0, 1, 3, 6, 2, 4, 7)
        q, k, v = qkv.reshape(3, b * nh * nw, heads, ws * ws, c).unbind(0)
        o = _attend(self, q, k, v, (ws, ws))  # (B*nh*nw, ws*ws, heads, C)
        o = o.reshape(b, nh, nw, ws, ws, dim).transpose(2, 3).reshape(b, hp, wp, dim)
        if (hp, wp) != (h, w):
            o = o[:, :h, :w]
        return _linear(o, self.proj)


class _FastBlock(Block):
    """SAM's ``Block`` whose window attention skips the partition copies of x."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.window_size > 0:
            y = self.attn.forward_windowed(y, self.window_size)
        else:
            y = self.attn(y)
        x = x + y
        return x + _mlp(self.mlp, self.norm2(x))


def _patch_embed(pe: PatchEmbed, x: torch.Tensor) -> torch.Tensor:
    """PatchEmbed as one matmul over non-overlapping patches: (B, 3, H, W) -> (B, h, w, D)."""
    conv = pe.proj
    kh, kw = conv.kernel_size
    if conv.stride != (kh, kw) or conv.padding != (0, 0) or conv.dilation != (1, 1):
        return pe(x)
    if conv.groups != 1 or x.shape[-2] % kh or x.shape[-1] % kw:
        return pe(x)
    b, cin, hh, ww = x.shape
    h, w = hh // kh, ww // kw
    patches = x.reshape(b, cin, h, kh, w, kw).permute(0, 2, 4, 1, 3, 5).reshape(b, h, w, -1)
    return F.linear(patches, conv.weight.reshape(conv.out_channels, -1), conv.bias)


def _neck(neck: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """SAM's neck on channels-last tokens (B, h, w, D) -> (B, 256, h, w) contiguous."""
    parts = list(neck) if isinstance(neck, nn.Sequential) else []
    kinds = [type(m) for m in parts]
    if kinds != [nn.Conv2d, LayerNorm2d, nn.Conv2d, LayerNorm2d] or not _is_plain_1x1(parts[0]):
        return neck(x.permute(0, 3, 1, 2))
    conv1, ln1, conv2, ln2 = parts
    y = F.linear(x, conv1.weight.flatten(1), conv1.bias)
    y = F.layer_norm(y, (y.shape[-1],), ln1.weight, ln1.bias, ln1.eps)
    y = conv2(y.permute(0, 3, 1, 2))  # channels-last in, channels-last out
    y = y.permute(0, 2, 3, 1)
    y = F.layer_norm(y, (y.shape[-1],), ln2.weight, ln2.bias, ln2.eps)
    return y.permute(0, 3, 1, 2).contiguous()


def _is_plain_1x1(conv: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and conv.kernel_size == (1, 1)
        and conv.stride == (1, 1)
        and conv.padding == (0, 0)
        and conv.groups == 1
    )


class _FastImageEncoderViT(ImageEncoderViT):
    """SAM's ``ImageEncoderViT`` after :func:`optimize_sam`; same parameters and outputs."""

    _gs_dtype: torch.dtype | None = None  # None = auto (see runtime.resolve_compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 1024, 1024) normalised pixels -> (B, 256, 64, 64) in the weights' dtype."""
        weight_dtype = self.patch_embed.proj.weight.dtype
        compute = runtime.resolve_compute_dtype(self._gs_dtype, x.device)
        if compute == weight_dtype or x.device.type not in ("cpu", "cuda"):
            return self._forward_tokens(x.to(weight_dtype))
        if compute == torch.float32:  # weights in half precision, fp32 forced or asked
            with torch.autocast(x.device.type, enabled=False):
                return self._forward_fp32(x)
        with torch.autocast(x.device.type, dtype=compute):
            y = self._forward_tokens(x)
        return y.to(weight_dtype)

    def _forward_fp32(self, x: torch.Tensor) -> torch.Tensor:
        # Half-precision weights but float32 asked for: compute on upcast copies.
        state = {k: v.float() for k, v in self.state_dict().items()}
        y = torch.func.functional_call(self, state, (x.float(),), strict=True)
        return y.to(self.patch_embed.proj.weight.dtype)

    def _forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        x = _patch_embed(self.patch_embed, x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return _neck(self.neck, x)


_SWAPS: dict[type, type] = {
    ImageEncoderViT: _FastImageEncoderViT,
    Block: _FastBlock,
    Attention: _FastAttention,
}
_UNSWAPS: dict[type, type] = {fast: ref for ref, fast in _SWAPS.items()}


def _encoder_of(sam: nn.Module) -> nn.Module:
    encoder = getattr(sam, "image_encoder", sam)
    if not isinstance(encoder, nn.Module):
        raise TypeError(
            f"optimize_sam expects a segment_anything Sam or its ImageEncoderViT, got {type(sam)}"
        )
    return encoder


def optimize_sam(sam: nn.Module, *, dtype: Any = None) -> nn.Module:
    """Make ``sam``'s image encoder faster, in place; returns ``sam`` itself.

    Args:
        sam: a ``segment_anything`` ``Sam`` (or its ``ImageEncoderViT``). Its parameters are
            not copied or moved; ``state_dict()`` keys and values stay the same.
        dtype: the compute dtype of the encoder: ``None`` or "auto" (bfloat16 on CPUs with
            AMX/AVX512-BF16 and on bf16-capable GPUs, float16 on other GPUs, float32 on
            other CPUs), "fp32"/``torch.float32`` (exact path), "bf16"/``torch.bfloat16``,
            "fp16"/``torch.float16``. Resolved on every forward, for the input's device;
            ``GROUNDED_SAM_FORCE_FP32=1`` in the environment forces float32. bf16 asked for
            on a CPU without bf16 kernels (AVX2-only) runs correctly on generic kernels,
            slower than fp32, with a RuntimeWarning.

    Idempotent: calling it again only updates ``dtype``. Encoders that are not
    ``ImageEncoderViT`` (other backbones) are left as they are.
    """
    runtime.parse_dtype(dtype)  # fail early on a bad spelling
    runtime.warn_if_bf16_is_emulated(dtype)
    encoder = _encoder_of(sam)
    if type(encoder) not in (ImageEncoderViT, _FastImageEncoderViT):
        return sam
    for module in encoder.modules():
        fast = _SWAPS.get(type(module))
        if fast is not None:
            module.__class__ = fast
    encoder._gs_dtype = dtype
    return sam


def restore_sam(sam: nn.Module) -> nn.Module:
    """Undo :func:`optimize_sam` in place (original segment_anything classes); returns sam."""
    encoder = _encoder_of(sam)
    for module in encoder.modules():
        ref = _UNSWAPS.get(type(module))
        if ref is not None:
            module.__class__ = ref
            module.__dict__.pop("_gs_dtype", None)
    return sam


def is_optimized(sam: nn.Module) -> bool:
    """True when ``sam``'s image encoder has been through :func:`optimize_sam`."""
    return isinstance(_encoder_of(sam), _FastImageEncoderViT)
