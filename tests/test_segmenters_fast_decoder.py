"""The fast mask decoder and mask upscaling against segment_anything's, on tiny seeded SAMs.

What "the same" means here, explicitly:

- low-res logits of ``decode_masks`` in float32 equal ``MaskDecoder``'s up to float rounding
  (the sums are reordered), so a thresholded pixel may only differ where SAM's own logit is
  within rounding of the threshold; predicted IoUs are allclose;
- ``upscale_logits_exact`` is ``Sam.postprocess_masks`` bit for bit;
- ``upscale_logits`` (one resampling instead of two) is bit-identical when the image is
  1024 x 1024 and otherwise moves mask edges: on smooth logits (a trained SAM's) the masks
  keep IoU >= 0.99 with SAM's; on the tiny random model's noisy logits >= 0.95.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from _images import blob_image as _image
from segment_anything.modeling import MaskDecoder
from segment_anything.utils.transforms import ResizeLongestSide

from grounded_sam.segmenters import fast_decoder
from grounded_sam.segmenters.fast_decoder import (
    decode_masks,
    upscale_logits,
    upscale_logits_exact,
)
from grounded_sam.segmenters.sam import SamSegmenter
from grounded_sam.testing.sam import tiny_sam
from grounded_sam.types import Detections

pytestmark = pytest.mark.cpu_kind  # run again under an AVX2 cap (scripts/test.sh)

# logits this close to SAM's threshold (0) may change sign by float rounding alone
ROUNDING = 1e-5


@pytest.fixture(scope="module")
def sam():
    return tiny_sam(seed=0)


@pytest.fixture(scope="module")
def wide_sam():
    """The real decoder width: 256 channels, 8 heads (8 x 7 prompt tokens < 128)."""
    return tiny_sam(seed=1, prompt_embed_dim=256, decoder_heads=8, decoder_mlp_dim=512)


def _boxes(h: int, w: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, w, (n, 2)), axis=1)
    y = np.sort(rng.uniform(0, h, (n, 2)), axis=1)
    return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1).astype(np.float32)


def _dets(boxes: np.ndarray, size: tuple[int, int]) -> Detections:
    n = len(boxes)
    return Detections(
        xyxy=boxes,
        scores=np.ones(n, np.float32),
        phrases=["x"] * n,
        class_id=np.zeros(n, np.int64),
        image_size=size,
    )


def _prompts(sam, kind: str, b: int, seed: int = 0):
    """(sparse, dense) prompt embeddings of b prompts of one kind, in SAM's 1024 frame."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(b, 2, 2, generator=g).sort(dim=1).values * 1000
    boxes = xy.reshape(b, 4)[:, [0, 2, 1, 3]]
    points = labels = masks = None
    if kind == "clicks":  # 3 clicks each: 8 or more prompt tokens
        points = torch.rand(b, 3, 2, generator=g) * 1024
        labels = torch.randint(0, 2, (b, 3), generator=g, dtype=torch.int)
        boxes = None
    if kind == "box+mask":
        masks = torch.randn(b, 1, 256, 256, generator=g)
    with torch.no_grad():
        return sam.prompt_encoder(
            points=None if points is None else (points, labels), boxes=boxes, masks=masks
        )


def _assert_same_low_res(low, ref_low, iou, ref_iou):
    assert low.dtype == torch.float32 and iou.dtype == torch.float32
    assert low.shape == ref_low.shape and iou.shape == ref_iou.shape
    scale = float(ref_low.abs().max())
    torch.testing.assert_close(low, ref_low, rtol=0, atol=1e-5 * max(scale, 1.0))
    torch.testing.assert_close(iou, ref_iou, rtol=0, atol=1e-5)
    flipped = (low > 0) != (ref_low > 0)
    assert (ref_low[flipped].abs() < ROUNDING).all()  # only ties at the threshold differ


def _mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = (a & b).sum(axis=(-2, -1))
    union = (a | b).sum(axis=(-2, -1))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


# ---------------------------------------------------------------------- decode_masks
@pytest.mark.parametrize("kind", ["boxes", "clicks", "box+mask"])
@pytest.mark.parametrize("multimask", [False, True])
def test_decode_masks_fp32_equals_the_mask_decoder(sam, kind, multimask):
    # boxes: shared image work + folded attention; clicks: 2 heads x 8 tokens = 16 = internal
    # dim, the unfolded path; box+mask: a dense prompt per box, nothing shared.
    emb = torch.randn(1, 32, 64, 64, generator=torch.Generator().manual_seed(1))
    pe = sam.prompt_encoder.get_dense_pe()
    sparse, dense = _prompts(sam, kind, b=3)
    with torch.no_grad():
        ref_low, ref_iou = sam.mask_decoder(emb, pe, sparse, dense, multimask)
        low, iou = decode_masks(
            sam.mask_decoder, emb, pe, sparse, dense, multimask=multimask, upscale_chunk=2
        )
    _assert_same_low_res(low, ref_low, iou, ref_iou)
    assert ref_low.shape == (3, 3 if multimask else 1, 256, 256)
    assert 0.05 < (ref_low > 0).float().mean() < 0.95  # not a trivial comparison


def test_prompt_chunks_do_not_change_results(sam):
    emb = torch.randn(1, 32, 64, 64, generator=torch.Generator().manual_seed(8))
    pe = sam.prompt_encoder.get_dense_pe()
    sparse, dense = _prompts(sam, "boxes", b=5, seed=9)
    with torch.no_grad():
        runs = [
            decode_masks(sam.mask_decoder, emb, pe, sparse, dense, multimask=False, upscale_chunk=c)
            for c in (1, 5)
        ]
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=1e-6)


def test_decode_masks_at_the_real_width(wide_sam):
    emb = torch.randn(1, 256, 64, 64, generator=torch.Generator().manual_seed(2)) * 0.5
    pe = wide_sam.prompt_encoder.get_dense_pe()
    for kind in ("boxes", "clicks"):
        sparse, dense = _prompts(wide_sam, kind, b=3, seed=3)
        with torch.no_grad():
            ref_low, ref_iou = wide_sam.mask_decoder(emb, pe, sparse, dense, False)
            low, iou = decode_masks(wide_sam.mask_decoder, emb, pe, sparse, dense, multimask=False)
        _assert_same_low_res(low, ref_low, iou, ref_iou)


def test_decode_masks_in_bfloat16_is_close(sam):
    emb = torch.randn(1, 32, 64, 64, generator=torch.Generator().manual_seed(4))
    pe = sam.prompt_encoder.get_dense_pe()
    sparse, dense = _prompts(sam, "boxes", b=4, seed=5)
    with torch.no_grad():
        ref_low, ref_iou = sam.mask_decoder(emb, pe, sparse, dense, True)
        low, iou = decode_masks(
            sam.mask_decoder, emb, pe, sparse, dense, multimask=True, dtype=torch.bfloat16
        )
    assert low.dtype == torch.float32 and iou.dtype == torch.float32
    assert not torch.equal(low, ref_low)  # it really ran in bfloat16 …
    agree = ((low > 0) == (ref_low > 0)).float().mean()
    assert agree > 0.99  # … and computes the same masks
    torch.testing.assert_close(iou, ref_iou, rtol=0, atol=0.02)


def test_supports_only_segment_anythings_decoder(sam):
    assert fast_decoder.supports(sam.mask_decoder)
    other = tiny_sam(seed=0).mask_decoder
    other.__class__ = type("PatchedDecoder", (MaskDecoder,), {})  # e.g. HQ-SAM's subclass
    assert not fast_decoder.supports(other)
    with pytest.raises(ValueError, match=r"one image, \(1, C, h, w\)"):
        sparse, dense = _prompts(sam, "boxes", b=2)
        decode_masks(
            sam.mask_decoder,
            torch.zeros(2, 32, 64, 64),
            sam.prompt_encoder.get_dense_pe(),
            sparse,
            dense,
            multimask=False,
        )


# ---------------------------------------------------------------------- upscaling
SIZES = [(300, 500), (731, 211), (1, 1), (5, 1600), (1024, 1024), (1500, 999), (64, 64)]


@pytest.mark.parametrize("size", SIZES)
def test_upscale_logits_exact_is_postprocess_masks_bit_for_bit(sam, size):
    low = torch.randn(3, 2, 256, 256, generator=torch.Generator().manual_seed(6))
    input_size = ResizeLongestSide.get_preprocess_shape(*size, 1024)
    ref = sam.postprocess_masks(low, input_size, size)
    out = upscale_logits_exact(low, input_size, size)
    assert out.shape == (3, 2, *size)
    assert torch.equal(out, ref)
    # any leading shape, as long as the last two are the low-res grid
    assert torch.equal(upscale_logits_exact(low[0, 0], input_size, size), ref[0, 0])


def _smooth_logits(n: int, seed: int) -> torch.Tensor:
    """(n, 1, 256, 256) smooth low-res logits (soft discs), like a trained SAM's."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    out = np.empty((n, 1, 256, 256), np.float32)
    for i in range(n):
        cy, cx, r = rng.uniform(40, 200), rng.uniform(40, 200), rng.uniform(8, 60)
        out[i, 0] = (r - np.hypot(yy - cy, xx - cx)) / 4
    return torch.from_numpy(out)


@pytest.mark.parametrize("size", SIZES)
def test_upscale_logits_one_resampling_keeps_the_masks(sam, size):
    low = _smooth_logits(6, seed=7)
    input_size = ResizeLongestSide.get_preprocess_shape(*size, 1024)
    ref = sam.postprocess_masks(low, input_size, size)
    out = upscale_logits(low, input_size, size)
    assert out.shape == ref.shape and out.dtype == torch.float32
    if size == (1024, 1024):  # the second resampling is the identity there
        assert torch.equal(out, ref)
    ref_m, out_m = (ref > 0).numpy()[:, 0], (out > 0).numpy()[:, 0]
    big = ref_m.sum(axis=(1, 2)) >= 400  # IoU of a few pixels says nothing
    if big.any():
        assert _mask_iou(out_m[big], ref_m[big]).min() >= 0.99
    assert np.mean(out_m != ref_m) < 0.01


def test_upscale_logits_is_one_bilinear_resampling_of_the_valid_region():
    # by hand, in float64: output pixel centres mapped into the valid h/4 x w/4 low-res
    # region (fractional here: 614 / 4 = 153.5 rows), two taps per axis, clamped at its edge
    low = torch.randn(2, 1, 256, 256, generator=torch.Generator().manual_seed(10))
    size, input_size = (300, 500), (614, 1024)

    def taps(out: int, valid: float) -> torch.Tensor:
        n = int(np.ceil(valid))
        src = ((torch.arange(out, dtype=torch.float64) + 0.5) * valid / out - 0.5).clamp(min=0)
        i0 = src.floor().long().clamp(max=n - 1)
        i1 = (i0 + 1).clamp(max=n - 1)
        w = torch.zeros(out, n, dtype=torch.float64)
        w[torch.arange(out), i0] += 1 - (src - i0)
        w[torch.arange(out), i1] += src - i0
        return w

    wy, wx = taps(300, 614 / 4), taps(500, 1024 / 4)
    want = wy @ low[..., : wy.shape[1], : wx.shape[1]].double() @ wx.T
    out = upscale_logits(low, input_size, size)
    torch.testing.assert_close(out.double(), want, rtol=0, atol=1e-3)


# ---------------------------------------------------------------------- SamSegmenter
def test_segmenter_fast_decoder_fp32_gives_the_same_results(sam):
    size = (300, 500)
    image, boxes = _image(*size, seed=1), _boxes(*size, n=7, seed=1)
    ref_seg = SamSegmenter(sam)
    fast_seg = SamSegmenter(sam, fast_decoder=True, decoder_dtype="fp32", max_batch=4)
    calls: list[int] = []
    hook = sam.mask_decoder.register_forward_hook(lambda m, a, o: calls.append(len(o[0])))
    try:
        ref = ref_seg.segment(image, _dets(boxes, size))
        assert calls == [7]
        out = fast_seg.segment(image, _dets(boxes, size))
        assert calls == [7]  # SAM's decoder module was not run by the fast path
    finally:
        hook.remove()
    assert fast_seg.stats.decoder_calls == 2 and fast_seg.stats.prompts_decoded == 7

    np.testing.assert_allclose(out.mask_scores, ref.mask_scores, rtol=0, atol=1e-5)
    emb = ref_seg.embed(image)
    low, iou = fast_seg.decode(emb, boxes=torch.from_numpy(boxes))
    ref_low, ref_iou = ref_seg.decode(emb, boxes=torch.from_numpy(boxes))
    _assert_same_low_res(low, ref_low, iou, ref_iou)
    # the masks are the one-resampling upscale of (up to rounding) SAM's own logits …
    direct = (upscale_logits(ref_low, emb.input_size, size) > 0).numpy()[:, 0]
    assert np.mean(out.masks != direct) < 1e-4
    # … which, on the tiny random model's noisy logits, moves edges a little
    assert _mask_iou(out.masks, ref.masks).min() >= 0.95
    assert out.masks.dtype == bool and out.masks.shape == (7, *size)


def test_segmenter_fast_decoder_clicks_and_refinement(sam):
    size = (731, 211)
    image = _image(*size, seed=2)
    ref_seg, fast_seg = SamSegmenter(sam), SamSegmenter(sam, fast_decoder=True, dtype="fp32")
    emb = ref_seg.embed(image)
    # AMG-style float64 points, three masks each
    pts = np.array([[[10.0, 20.0]], [[100.5, 300.25]], [[200.0, 700.0]]])
    kw = {"points": pts, "point_labels": np.ones((3, 1), int), "multimask": True}
    (low, iou), (ref_low, ref_iou) = fast_seg.decode(emb, **kw), ref_seg.decode(emb, **kw)
    _assert_same_low_res(low, ref_low, iou, ref_iou)
    # a click, then a second click with the previous logits
    _, score, low = fast_seg.segment_points(image, [[120, 80]], [1])
    _, ref_score, ref_low = ref_seg.segment_points(image, [[120, 80]], [1])
    assert abs(score - ref_score) < 1e-5
    np.testing.assert_allclose(low, ref_low, rtol=0, atol=1e-5)
    two = {"points_xy": [[120, 80], [150, 400]], "labels": [1, 0], "mask_input": ref_low}
    mask, _, low2 = fast_seg.segment_points(image, **two)
    _, _, ref_low2 = ref_seg.segment_points(image, **two)
    np.testing.assert_allclose(low2, ref_low2, rtol=0, atol=1e-5)
    assert mask.shape == size and mask.dtype == bool


def test_fast_flag_settings_and_fallbacks(sam, monkeypatch):
    assert SamSegmenter(sam, fast=True).fast_decoder  # follows fast …
    assert not SamSegmenter(sam, fast=True, fast_decoder=False).fast_decoder  # … unless told
    assert not SamSegmenter(sam).fast_decoder  # default: SAM's own decoder
    # off a CPU (where it measured slower, on an H200) fast leaves SAM's decoder, unless told
    meta = copy.deepcopy(sam)
    assert not SamSegmenter(meta, fast=True, device="meta").fast_decoder
    assert SamSegmenter(meta, fast=True, fast_decoder=True, device="meta").fast_decoder
    with pytest.raises(ValueError, match="dtype"):
        SamSegmenter(sam, fast_decoder=True, decoder_dtype="int8")

    size = (90, 120)
    image, boxes = _image(*size, seed=3), torch.from_numpy(_boxes(*size, n=3, seed=3))
    fp32 = SamSegmenter(sam, fast_decoder=True, decoder_dtype="fp32")
    emb = fp32.embed(image)
    low32, iou32 = fp32.decode(emb, boxes=boxes)
    bf16 = SamSegmenter(sam, fast_decoder=True, decoder_dtype="bf16")
    low16, _ = bf16.decode(emb, boxes=boxes)
    assert not torch.equal(low16, low32)
    # the numerical-safety switch forces float32 on every call
    monkeypatch.setenv("GROUNDED_SAM_FORCE_FP32", "1")
    forced, forced_iou = bf16.decode(emb, boxes=boxes)
    assert torch.equal(forced, low32) and torch.equal(forced_iou, iou32)
    monkeypatch.delenv("GROUNDED_SAM_FORCE_FP32")

    # a decoder the fast path does not know runs SAM's own code: bit-identical results
    other = tiny_sam(seed=0)
    other.mask_decoder.__class__ = type("PatchedDecoder", (MaskDecoder,), {})
    seg = SamSegmenter(other, fast_decoder=True, decoder_dtype="fp32")
    ref_low, ref_iou = SamSegmenter(sam).decode(emb, boxes=boxes)
    low, iou = seg.decode(emb, boxes=boxes)
    assert torch.equal(low, ref_low) and torch.equal(iou, ref_iou)
    # no prompts: nothing runs, empty results of the right shape
    low0, iou0 = fp32.decode(emb, boxes=np.zeros((0, 4)), multimask=True)
    assert low0.shape == (0, 3, 256, 256) and iou0.shape == (0, 3)
