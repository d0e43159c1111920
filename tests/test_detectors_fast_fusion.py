"""fast_fusion.bi_attention: transformers' fusion attention with the image side folded away."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import GroundingDinoConfig
from transformers.models.grounding_dino.modeling_grounding_dino import (
    GroundingDinoBiMultiHeadAttention,
)

from grounded_sam.detectors.fast_fusion import bi_attention

pytestmark = pytest.mark.cpu_kind  # run again under an AVX2 cap (scripts/test.sh)


def _module(seed: int, d_model: int = 32, ffn: int = 64, heads: int = 8):
    torch.manual_seed(seed)
    config = GroundingDinoConfig(
        d_model=d_model, encoder_ffn_dim=ffn, encoder_attention_heads=heads
    )
    attn = GroundingDinoBiMultiHeadAttention(config).eval()
    with torch.no_grad():  # biases away from zero, so that folding them is checked too
        for p in attn.parameters():
            p.normal_(0, 0.3)
    return attn


def _inputs(seed: int, b: int, n: int, t: int, d: int):
    g = torch.Generator().manual_seed(seed)
    vision = torch.randn(b, n, d, generator=g)
    text = torch.randn(b, t, d, generator=g)
    vision_mask = torch.zeros(b, n, dtype=torch.bool)
    text_mask = torch.zeros(b, t, dtype=torch.bool)
    if b > 1:  # the second image padded at the end, its prompt shorter
        vision_mask[1, n - n // 3 :] = True
        text_mask[1, t - 2 :] = True
    return vision, text, vision_mask, text_mask


@pytest.mark.parametrize(("b", "masks"), [(1, False), (2, True), (2, False)])
def test_equals_transformers_forward(b, masks):
    attn = _module(b)
    vision, text, vmask, tmask = _inputs(b, b, 57, 6, 32)
    args = (vision, text, vmask, tmask) if masks else (vision, text)
    with torch.inference_mode():
        (ref_v, ref_vw), (ref_t, ref_tw) = attn(*args)
        (v, vw), (t, tw) = bi_attention(attn, *args)
    assert v.shape == ref_v.shape == (b, 57, 32) and t.shape == ref_t.shape == (b, 6, 32)
    assert vw.shape == ref_vw.shape == (b * attn.num_heads, 57, 6)
    assert tw.shape == ref_tw.shape == (b * attn.num_heads, 6, 57)
    for ours, ref in ((v, ref_v), (t, ref_t), (vw, ref_vw), (tw, ref_tw)):
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_never_projects_the_image_tokens():
    """The three image-side linears are read for their weights, never run; the work over the
    image tokens drops from ~3 GEMMs of d_model x embed_dim to ~3 of d_model x heads*T."""
    attn = _module(0, d_model=64, ffn=512, heads=8)  # embed_dim 256, 4 heads
    calls = []
    for name in ("vision_proj", "values_vision_proj", "out_vision_proj"):
        getattr(attn, name).register_forward_hook(lambda *_, name=name: calls.append(name))
    vision, text, _, _ = _inputs(0, 1, 2000, 13, 64)
    with torch.inference_mode(), FlopCounterMode(display=False) as ours:
        bi_attention(attn, vision, text)
    assert calls == []
    with torch.inference_mode(), FlopCounterMode(display=False) as ref:
        attn(vision, text)
    assert sorted(calls) == ["out_vision_proj", "values_vision_proj", "vision_proj"]
    assert ours.get_total_flops() * 4 < ref.get_total_flops()


def test_optimized_model_routes_fusion_through_it_on_cpu(tmp_path):
    from grounded_sam.detectors.fast_grounding_dino import optimize_grounding_dino
    from grounded_sam.testing.grounding_dino import tiny_grounding_dino

    model, _ = tiny_grounding_dino(tmp_path, seed=0)
    optimize_grounding_dino(model, dtype="fp32")
    fusion = [m for m in model.modules() if isinstance(m, GroundingDinoBiMultiHeadAttention)]
    assert fusion and all(type(m).__name__.startswith("_Fast") for m in fusion)
    vision, text, vmask, tmask = _inputs(1, 2, 20, 5, fusion[0].vision_dim)
    with torch.inference_mode():
        (v, _), (t, _) = fusion[0](vision, text, vmask, tmask)
        (ref_v, _), (ref_t, _) = type(fusion[0])._gs_base.forward(
            fusion[0], vision, text, vmask, tmask
        )
    torch.testing.assert_close(v, ref_v, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(t, ref_t, rtol=1e-5, atol=1e-5)
