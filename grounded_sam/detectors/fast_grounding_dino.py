"""A faster Grounding DINO forward: the same weights and outputs, less work per sample point.

:func:`optimize_grounding_dino` changes a built transformers ``GroundingDinoForObjectDetection``
in place (only ``module.__class__`` changes; parameters, ``state_dict()`` keys and
checkpoints stay as they are):

- multi-scale deformable attention without ``grid_sample`` (on CPUs; other devices keep
  transformers' kernel): each sample point's four
  bilinear corners become rows of the value table with weights (bilinear weight x attention
  weight, zero outside the feature map), and one ``embedding_bag(mode="sum")`` gathers and
  sums them per (query, head). transformers' pure-PyTorch path runs ``grid_sample`` per level
  and then stacks, multiplies and sums a (heads, 32, queries, levels x points) tensor
  (360 MB per encoder layer at 800x1333); here the output is written once, in the layout
  ``output_proj`` reads. Same arithmetic (float32 gather, float32 weights);
- the image-text fusion attention of every encoder layer with its image-side projections
  folded into the few text tokens (:mod:`grounded_sam.detectors.fast_fusion`; on CPUs):
  ~1.8 instead of ~35 GFLOP a layer, the same arithmetic up to summation order; the encoder
  FFN's ReLU in place (no second 182 MB buffer per layer at 800x1333);
- under ``torch.autocast`` in bfloat16 on CPUs with AMX/AVX512-BF16 when asked or when
  "auto" finds hardware support (on GPUs only when a half dtype is asked for explicitly:
  "auto" keeps float32 there), with **float32 islands** where a
  small error moves a box or a score across a threshold: the sampling offsets and attention
  weights of the deformable attention (sample positions), the box heads (reference-point
  refinement of every decoder layer and the two-stage proposals), the encoder's proposal
  projection, and the text-image contrastive logits. Outputs come back in float32.

``GROUNDED_SAM_FORCE_FP32=1`` (read on every forward) runs the optimised path in float32.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from grounded_sam import fp32_linear, runtime
from grounded_sam.detectors.fast_fusion import bi_attention

__all__ = ["optimize_grounding_dino", "is_optimized", "deformable_attention"]

# Queries per embedding_bag call: keeps the index/weight tensors (queries x heads x levels x
# points x 4) near 2 M entries, in cache, whatever the image size.
_QUERY_CHUNK = 4096


def deformable_attention(
    value: torch.Tensor,
    spatial_shapes: list[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
    query_chunk: int = _QUERY_CHUNK,
) -> torch.Tensor:
    """Multi-scale deformable attention (bilinear, zero padding, ``align_corners=False``).

    Args:
        value: (B, S, heads, D) values of all levels, flattened level after level
            (S = sum of h*w); any float dtype (gathered in float32).
        spatial_shapes: (h, w) of each of the L levels, in the order of ``value``.
        sampling_locations: (B, Q, heads, L, P, 2) float, normalised (x, y) in [0, 1] of each
            level's map (outside is allowed: those corners contribute zero).
        attention_weights: (B, Q, heads, L, P) float, the weight of each sample point.

    Returns:
        (B, Q, heads * D) float32: the same as transformers' ``MultiScaleDeformableAttention``
        (up to summation order).

    How: each level's map gets a border of zeros (1 pixel before, 2 after), and pixel
    coordinates are clamped to [-1, w] x [-1, h]; then all four bilinear corners of every
    point are inside the padded map, out-of-map corners read zeros, and no validity masks
    are needed. Row indices of the (x0, y0) corner are computed once per point; the other
    three are fixed offsets (+1 pixel, +1 row, +1 both).
    """
    b, s, heads, d = value.shape
    _, q, _, levels, points, _ = sampling_locations.shape
    dev = value.device
    # padded table: (B, S', heads, D) float32, S' = sum of (h + 3) * (w + 3)
    padded, starts = [], []
    offset = 0
    for (h, w), part in zip(
        spatial_shapes, value.float().split([h * w for h, w in spatial_shapes], 1), strict=True
    ):
        padded.append(
            F.pad(part.reshape(b, h, w, heads * d), (0, 0, 1, 2, 1, 2)).reshape(b, -1, heads, d)
        )
        starts.append(offset)
        offset += (h + 3) * (w + 3)
    table = torch.cat(padded, 1).reshape(-1, d)
    shapes = torch.tensor(spatial_shapes, dtype=torch.float32, device=dev)  # (L, 2) = (h, w)
    height, width = shapes[:, 0].view(levels, 1), shapes[:, 1].view(levels, 1)
    width_p = width + 3  # padded row length
    # row = base + x0 * heads + y0 * width_p * heads (x0, y0 in the padded map); float is
    # exact for rows < 2**24, int64 beyond (a batch of ~90 images at 800x1333)
    idx_dtype = torch.float32 if b * offset * heads < 2**24 else torch.float64
    # row of (batch, padded pixel 0 of the level, head) in the table
    base = torch.arange(b, device=dev).view(b, 1, 1, 1, 1) * (offset * heads)
    base = base + torch.arange(heads, device=dev).view(1, 1, heads, 1, 1)
    base = (base + torch.tensor(starts, device=dev).view(1, 1, 1, levels, 1) * heads).to(idx_dtype)
    row_step = (width_p * heads).to(idx_dtype)  # (L, 1)
    int_dtype = torch.int32 if idx_dtype == torch.float32 else torch.int64
    half, zero = shapes.new_tensor(0.5), shapes.new_tensor(0.0)
    out = torch.empty(b, q, heads, d, device=dev)
    step = max(1, min(query_chunk, q))
    for lo in range(0, q, step):
        hi = min(lo + step, q)
        n = b * (hi - lo) * heads
        # Planar (B, q, heads, L, P) tensors throughout: broadcasts over a trailing dimension
        # of 2 or 4 are ~5x slower per element on CPU. Pixel coordinates in the padded map,
        # clamped to [0, w + 1] x [0, h + 1], their floors and fractions:
        loc = sampling_locations[:, lo:hi].float()
        px = torch.addcmul(half, loc[..., 0], width).clamp_(min=zero, max=width + 1)
        py = torch.addcmul(half, loc[..., 1], height).clamp_(min=zero, max=height + 1)
        x0, y0 = px.floor(), py.floor()
        fx, fy = px.sub_(x0), py.sub_(y0)
        rows = torch.addcmul(base, x0.to(idx_dtype), row_step.new_tensor(heads))
        rows = torch.addcmul(rows, y0.to(idx_dtype), row_step)
        # one bag per (batch, query, head): its L x P x 4 (row, weight) pairs, corner-major;
        # the corners' rows: +0, +1 pixel, +1 row, +1 row and pixel
        idx = torch.empty(b, hi - lo, heads, 4, levels, points, dtype=int_dtype, device=dev)
        wts = torch.empty(b, hi - lo, heads, 4, levels, points, device=dev)
        idx[:, :, :, 0] = rows
        torch.add(idx[:, :, :, 0], heads, out=idx[:, :, :, 1])
        idx[:, :, :, 2] = rows.add_(row_step)
        torch.add(idx[:, :, :, 2], heads, out=idx[:, :, :, 3])
        a = attention_weights[:, lo:hi].float()
        ay1 = a * fy
        ay0 = a - ay1  # a * (1 - fy)
        gx0 = torch.rsub(fx, 1.0)  # 1 - fx
        torch.mul(ay0, gx0, out=wts[:, :, :, 0])
        torch.mul(ay0, fx, out=wts[:, :, :, 1])
        torch.mul(ay1, gx0, out=wts[:, :, :, 2])
        torch.mul(ay1, fx, out=wts[:, :, :, 3])
        o = F.embedding_bag(idx.view(n, -1), table, per_sample_weights=wts.view(n, -1), mode="sum")
        out[:, lo:hi] = o.view(b, hi - lo, heads, d)
    return out.view(b, q, heads * d)


class _FastMSDAKernel(nn.Module):
    """Stands in for transformers' ``MultiScaleDeformableAttention`` (same call signature)."""

    def forward(
        self,
        value: torch.Tensor,
        value_spatial_shapes: torch.Tensor,
        value_spatial_shapes_list: list[tuple[int, int]],
        level_start_index: torch.Tensor,
        sampling_locations: torch.Tensor,
        attention_weights: torch.Tensor,
        im2col_step: int = 64,
    ) -> torch.Tensor:
        if value.device.type != "cpu":  # grid_sample is fast on GPUs: transformers' own
            from transformers.models.grounding_dino import modeling_grounding_dino as gd

            return gd.MultiScaleDeformableAttention.forward(
                self,
                value,
                value_spatial_shapes,
                value_spatial_shapes_list,
                level_start_index,
                sampling_locations,
                attention_weights,
                im2col_step,
            )
        shapes = [(int(h), int(w)) for h, w in value_spatial_shapes_list]
        return deformable_attention(value, shapes, sampling_locations, attention_weights)


@functools.cache
def _fast_bi_attention_class(cls: type) -> type:
    """transformers' ``GroundingDinoBiMultiHeadAttention`` through :func:`bi_attention` on
    CPUs in eval mode (elsewhere, and while training with dropout, transformers' own)."""

    def forward(
        self: nn.Module,
        vision_features: torch.Tensor,
        text_features: torch.Tensor,
        vision_attention_mask: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
    ) -> Any:
        if vision_features.device.type != "cpu" or (self.training and self.dropout > 0):
            return cls.forward(
                self, vision_features, text_features, vision_attention_mask, text_attention_mask
            )
        return bi_attention(
            self, vision_features, text_features, vision_attention_mask, text_attention_mask
        )

    return type(f"_Fast{cls.__name__}", (cls,), {"forward": forward, "_gs_base": cls})


class _ReLUInPlace(nn.ReLU):
    """The encoder FFN's ReLU, applied in place on ``fc1``'s output (used nowhere else) when
    no gradient is needed: one 22k x 2048 float32 buffer (182 MB at 800x1333) fewer per layer,
    and with it its page faults. Under autograd it is ``nn.ReLU``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return super().forward(x)
        return torch.relu_(x)


class _FastLinear(nn.Linear):
    """``nn.Linear`` that, under CPU bf16 autocast, runs as one oneDNN bf16 GEMM with the bias
    in its epilogue (autocast's linear is about 2x slower at 22k x 256 -> 2048 tokens). The
    weight is cast per call, as autocast does: no persistent copies. Elsewhere:
    :func:`grounded_sam.fp32_linear.linear` (MKL or oneDNN in float32, whichever this CPU
    runs faster; ``F.linear`` for other dtypes and devices).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = None
        if x.device.type == "cpu" and not torch.compiler.is_compiling():
            if runtime.cpu_autocast_dtype() == torch.bfloat16:
                fused = runtime.fused_bf16_linear_op()
        if fused is None:
            return fp32_linear.linear(x, self.weight, self.bias)
        dt = torch.bfloat16
        bias = None if self.bias is None else self.bias.to(dt)
        return fused(x.to(dt).contiguous(), self.weight.to(dt), bias, "none", [], "")


def _float_args(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    def up(t: Any) -> Any:
        return t.float() if isinstance(t, torch.Tensor) and t.is_floating_point() else t

    return tuple(up(a) for a in args), {k: up(v) for k, v in kwargs.items()}


@functools.cache
def _fp32_class(cls: type) -> type:
    """A subclass of ``cls`` whose forward runs in float32 outside any autocast region."""

    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        if not _autocast_on():
            return cls.forward(self, *args, **kwargs)
        args, kwargs = _float_args(args, kwargs)
        with torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return cls.forward(self, *args, **kwargs)

    return type(f"_Fp32{cls.__name__}", (cls,), {"forward": forward, "_gs_base": cls})


def _autocast_on() -> bool:
    try:
        return torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled() or torch.is_autocast_enabled()


@functools.cache
def _fast_detector_class(cls: type) -> type:
    """``GroundingDinoForObjectDetection`` whose forward picks the compute dtype per call."""

    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        device = pixels.device if isinstance(pixels, torch.Tensor) else torch.device("cpu")
        if device.type == "cuda" and runtime.parse_dtype(self._gs_dtype) is None:
            # "auto" on CUDA: float32 as transformers runs it (on an H200 the bf16 path
            # measured 80 ms against 71 ms, with worse agreement): nothing to gain there
            return cls.forward(self, *args, **kwargs)
        compute = runtime.resolve_compute_dtype(self._gs_dtype, device)
        weight_dtype = next(self.parameters()).dtype
        if compute == weight_dtype or device.type not in ("cpu", "cuda") or _autocast_on():
            return cls.forward(self, *args, **kwargs)
        if compute == torch.float32:  # half-precision weights: leave them alone
            return cls.forward(self, *args, **kwargs)
        with torch.autocast(device.type, dtype=compute):
            out = cls.forward(self, *args, **kwargs)
        for key in ("logits", "pred_boxes"):
            value = getattr(out, key, None)
            if isinstance(value, torch.Tensor) and value.dtype != weight_dtype:
                out[key] = value.to(weight_dtype)
        return out

    return type(f"_Fast{cls.__name__}", (cls,), {"forward": forward, "_gs_base": cls})


def _fp32_island_modules(model: nn.Module) -> list[nn.Module]:
    """Modules whose outputs decide positions, boxes and scores (run in float32)."""
    from transformers.models.grounding_dino import modeling_grounding_dino as gd

    islands: list[nn.Module] = []
    for module in model.modules():
        if isinstance(module, gd.GroundingDinoMultiscaleDeformableAttention):
            islands += [module.sampling_offsets, module.attention_weights]
        elif isinstance(
            module, (gd.GroundingDinoMLPPredictionHead, gd.GroundingDinoContrastiveEmbedding)
        ):
            islands.append(module)
    inner = getattr(model, "model", model)
    for name in ("enc_output", "enc_output_norm"):
        if isinstance(getattr(inner, name, None), nn.Module):
            islands.append(getattr(inner, name))
    return islands


def optimize_grounding_dino(model: nn.Module, *, dtype: Any = None) -> nn.Module:
    """Make a transformers ``GroundingDinoForObjectDetection`` faster, in place; returns it.

    Args:
        model: a ``GroundingDinoForObjectDetection`` (any size). Parameters are not copied,
            cast or moved; ``state_dict()`` keys and values are unchanged.
        dtype: compute dtype: ``None``/"auto" (bfloat16 on CPUs with AMX/AVX512-BF16,
            float32 on other CPUs, and on CUDA transformers' own float32 forward: measured on
            an H200, the bf16 path was slower, 80 against 71 ms at 800x1333),
            "fp32"/``torch.float32`` (the exact path: deformable and fusion attention only),
            "bf16"/``torch.bfloat16`` or "fp16"/``torch.float16`` (autocast with float32
            islands for sample positions, box heads and logits). Resolved on every forward
            for the input's device; ``GROUNDED_SAM_FORCE_FP32=1`` forces float32. Inside a
            caller's own autocast region the caller's setting is used as is. bf16 on a CPU
            without bf16 kernels (AVX2-only) runs on generic kernels, slower than fp32, with a
            RuntimeWarning.

    Idempotent: calling it again only updates ``dtype``.

    Raises:
        TypeError: ``model`` is not a ``GroundingDinoForObjectDetection``.
        ValueError: ``dtype`` is not one of the spellings above.
    """
    from transformers import GroundingDinoForObjectDetection
    from transformers.models.grounding_dino import modeling_grounding_dino as gd

    runtime.parse_dtype(dtype)  # fail early on a bad spelling
    runtime.warn_if_bf16_is_emulated(dtype)
    if not isinstance(model, GroundingDinoForObjectDetection):
        raise TypeError(
            "optimize_grounding_dino expects a transformers GroundingDinoForObjectDetection, "
            f"got {type(model).__name__}"
        )
    if not is_optimized(model):
        for module in model.modules():
            if type(module) is gd.MultiScaleDeformableAttention:
                module.__class__ = _FastMSDAKernel
            elif type(module) is gd.GroundingDinoBiMultiHeadAttention:
                module.__class__ = _fast_bi_attention_class(type(module))
            elif isinstance(module, gd.GroundingDinoDeformableLayer):
                if type(module.activation_fn) is nn.ReLU:
                    module.activation_fn.__class__ = _ReLUInPlace
        islands = _fp32_island_modules(model)
        for module in islands:
            if not hasattr(type(module), "_gs_base"):
                module.__class__ = _fp32_class(type(module))
        for module in model.modules():
            if type(module) is nn.Linear:
                module.__class__ = _FastLinear
        model.__class__ = _fast_detector_class(type(model))
    model._gs_dtype = dtype
    return model


def is_optimized(model: nn.Module) -> bool:
    """True when ``model`` has been through :func:`optimize_grounding_dino`."""
    return hasattr(type(model), "_gs_base")
