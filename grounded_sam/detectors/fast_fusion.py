"""Grounding DINO's image-text fusion attention with the image-side projections folded away.

Each of the six encoder layers of Grounding DINO runs a bi-directional cross-attention
(transformers' ``GroundingDinoBiMultiHeadAttention``) between N image tokens (22,223 at
800x1333) and T text tokens (a dozen). As written it projects every image token three times
through a d_model -> 1024 -> d_model bottleneck (query ``vision_proj``, value
``values_vision_proj``, output ``out_vision_proj``): 3 x 2·N·256·1024 ≈ 35 GFLOP a layer,
about a quarter of the whole model's work, to attend over a dozen keys.

With so few text tokens the same numbers come from products with the text side first
(per head h, x the image tokens, k/v the text keys/values, P the softmax probabilities):

- logits: ``scale (x Wq_h^T + bq_h) k_h^T = x (scale Wq_h^T k_h^T) + scale bq_h k_h^T``,
  one (N, d_model) @ (d_model, heads*T) GEMM;
- text output: ``P_h^T (x Wv_h^T + bv_h) = (P_h^T x) Wv_h^T + bv_h sum(P_h^T)``;
- image output: ``sum_h P_h (v_h Wo_h^T) + bo``, one (N, heads*T) @ (heads*T, d_model) GEMM.

That is ~1.8 GFLOP a layer instead of ~35, no (heads, N, 256) transposes, and the same
arithmetic up to float summation order (the max-subtraction, clamps, masks and both
softmaxes are transformers', in the same order). The attention weights it returns are
transformers' too: (B*heads, N, T) and (B*heads, T, N).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["bi_attention"]


def bi_attention(
    attn: nn.Module,
    vision: torch.Tensor,
    text: torch.Tensor,
    vision_mask: torch.Tensor | None = None,
    text_mask: torch.Tensor | None = None,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``GroundingDinoBiMultiHeadAttention.forward`` (eval mode) with the image side folded.

    Args:
        attn: the transformers module (its linears are read, not changed).
        vision: (B, N, d_model) float image tokens.
        text: (B, T, d_model) float text tokens.
        vision_mask: (B, N) bool, True at padded image tokens, or None.
        text_mask: (B, T) bool, True at padded text tokens, or None.

    Returns:
        ((image output (B, N, d_model), image-to-text weights (B*heads, N, T)),
        (text output (B, T, d_model), text-to-image weights (B*heads, T, N))).
    """
    b, n, dim = vision.shape
    t = text.shape[1]
    heads, hd = attn.num_heads, attn.head_dim
    # text keys and values per head: (B, heads, T, hd)
    keys = attn.text_proj(text).view(b, t, heads, hd).transpose(1, 2)
    values = attn.values_text_proj(text).view(b, t, heads, hd).transpose(1, 2)

    # logits (B, N, heads*T) = x @ fold + shift
    wq = attn.vision_proj.weight.view(heads, hd, dim)
    fold = torch.matmul(keys, wq).mul_(attn.scale)  # (B, heads, T, dim)
    fold = fold.reshape(b, heads * t, dim).transpose(1, 2)  # (B, dim, heads*T)
    logits = torch.bmm(vision, fold)
    if attn.vision_proj.bias is not None:
        bq = attn.vision_proj.bias.view(1, heads, 1, hd)
        shift = (keys * bq).sum(-1).mul_(attn.scale)  # (B, heads, T)
        logits = logits + shift.reshape(b, 1, heads * t)
    # transformers' layout from here on: (B*heads, N, T)
    attn_weights = logits.view(b, n, heads, t).permute(0, 2, 1, 3).reshape(b * heads, n, t)

    attn_weights = attn_weights - attn_weights.max()
    attn_weights = torch.clamp(attn_weights, min=-50000, max=50000)
    text_weights = attn_weights.transpose(1, 2)
    text_weights = text_weights - torch.max(text_weights, dim=-1, keepdim=True)[0]
    text_weights = torch.clamp(text_weights, min=-50000, max=50000)
    if vision_mask is not None:
        text_weights.masked_fill_(_per_head(vision_mask, heads), float("-inf"))
    text_weights = text_weights.softmax(dim=-1)
    if text_mask is not None:
        attn_weights.masked_fill_(_per_head(text_mask, heads), float("-inf"))
    vision_weights = attn_weights.softmax(dim=-1)

    # text output: (P^T x) Wv_h^T + bv_h * sum(P^T) -> (B, T, heads*hd) -> out_text_proj
    pooled = torch.bmm(text_weights.reshape(b, heads * t, n), vision)  # (B, heads*T, dim)
    wv = attn.values_vision_proj.weight.view(heads, hd, dim)
    text_out = torch.matmul(pooled.view(b, heads, t, dim), wv.transpose(1, 2))  # (B, h, T, hd)
    if attn.values_vision_proj.bias is not None:
        mass = text_weights.sum(-1).view(b, heads, t, 1)
        text_out = text_out + mass * attn.values_vision_proj.bias.view(1, heads, 1, hd)
    text_out = attn.out_text_proj(text_out.transpose(1, 2).reshape(b, t, heads * hd))

    # image output: sum_h P_h (v_h Wo_h^T) + bo, one GEMM over the N image tokens
    wo = attn.out_vision_proj.weight.view(dim, heads, hd).permute(1, 2, 0)  # (heads, hd, dim)
    mixed = torch.matmul(values, wo).reshape(b, heads * t, dim)  # (B, heads*T, dim)
    probs = vision_weights.view(b, heads, n, t).permute(0, 2, 1, 3).reshape(b, n, heads * t)
    vision_out = torch.bmm(probs, mixed)
    if attn.out_vision_proj.bias is not None:
        vision_out = vision_out + attn.out_vision_proj.bias
    return (vision_out, vision_weights), (text_out, text_weights)


def _per_head(mask: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, L) bool -> (B*heads, 1, L), as transformers repeats it."""
    return mask[:, None, None, :].repeat(1, heads, 1, 1).flatten(0, 1)
