"""SAM 2.1's fast path (``Sam2Segmenter(fast=True)``, ``fast_sam2_decoder``) against the exact one.

float32: the fast decoder gives ``sam2``'s ``MaskDecoder`` values up to float rounding, on the
tiny seeded model and on a full-size SAM 2.1 decoder, for boxes, clicks, mask inputs, one
mask (with SAM 2's fall-back to the best multimask output where mask 0 is unstable) and three.
bfloat16 (only where the CPU has bf16 kernels): masks at IoU >= 0.98 with the exact path's.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _boxes import border_boxes as _boxes
from _boxes import detections_for as _dets
from _images import blob_image as _image

pytest.importorskip("sam2", reason="needs the sam2 package: pip install -e '.[sam2]'")

from grounded_sam import runtime  # noqa: E402
from grounded_sam.segmenters import fast_sam2_decoder  # noqa: E402
from grounded_sam.segmenters.sam2 import Sam2Segmenter  # noqa: E402
from grounded_sam.segmenters.sam2_loading import SAM2_CONFIGS, build_sam2_model  # noqa: E402
from grounded_sam.testing.sam2 import tiny_sam2  # noqa: E402

pytestmark = pytest.mark.cpu_kind  # run again under an AVX2 cap (scripts/test.sh)

SIZE = (300, 451)
needs_bf16 = pytest.mark.skipif(
    not runtime.cpu_has_fast_bf16(),
    reason=f"needs oneDNN bf16 kernels (AMX or AVX512-BF16); {runtime.missing_bf16_reason()}",
)


@pytest.fixture(scope="module")
def model():
    return tiny_sam2(seed=0)


@pytest.fixture(scope="module")
def exact(model):
    return Sam2Segmenter(model)


@pytest.fixture(scope="module")
def embedding(exact):
    return exact.embed(_image(*SIZE))


@pytest.fixture(scope="module")
def full_decoder_inputs():
    """A full-size SAM 2.1 (Hiera-T; the decoder is the same in every size) with seeded
    random weights, and random image features of the official shapes."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        full = build_sam2_model(**SAM2_CONFIGS["sam2.1_hiera_tiny"]).eval()
        c = full.sam_prompt_embed_dim
        feats = (torch.randn(1, c, 64, 64), torch.randn(1, c // 8, 256, 256))
        feats = (*feats, torch.randn(1, c // 4, 128, 128))
    return full, feats[0], (feats[1], feats[2])


def _prompts(model, size, *, boxes=None, points=None, labels=None, mask_input=None):
    """Sparse and dense embeddings of prompts in pixels of an image of ``size``, as
    ``Sam2Segmenter.decode`` makes them."""
    from sam2.utils.transforms import SAM2Transforms

    from grounded_sam.segmenters.sam2_prompts import sam2_point_prompts

    pts, masks, _ = sam2_point_prompts(
        points=points,
        point_labels=labels,
        boxes=boxes,
        mask_input=mask_input,
        transforms=SAM2Transforms(resolution=model.image_size, mask_threshold=0.0),
        original_size=size,
        mask_input_size=tuple(model.sam_prompt_encoder.mask_input_size),
        device=torch.device("cpu"),
    )
    with torch.no_grad():
        return model.sam_prompt_encoder(points=pts, boxes=None, masks=masks)


def _both(model, image_embed, high_res, sparse, dense, multimask, dtype=torch.float32):
    """(reference low, reference iou, fast low, fast iou)."""
    decoder = model.sam_mask_decoder
    image_pe = model.sam_prompt_encoder.get_dense_pe()
    with torch.no_grad():
        ref_low, ref_iou, _, _ = decoder(
            image_embeddings=image_embed,
            image_pe=image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=True,
            high_res_features=list(high_res),
        )
    low, iou = fast_sam2_decoder.decode_masks(
        decoder, image_embed, image_pe, sparse, dense, high_res, multimask=multimask, dtype=dtype
    )
    assert low.dtype == iou.dtype == torch.float32
    assert low.shape == ref_low.shape and iou.shape == ref_iou.shape
    return ref_low, ref_iou, low, iou


def _stabilities(model, image_embed, high_res, sparse, dense) -> torch.Tensor:
    """SAM 2's stability score of mask 0 per prompt (the single-mask choice reads it)."""
    decoder = model.sam_mask_decoder
    with torch.no_grad():
        masks, _, _, _ = decoder.predict_masks(
            image_embeddings=image_embed,
            image_pe=model.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            repeat_image=True,
            high_res_features=list(high_res),
        )
    return decoder._get_stability_scores(masks[:, 0])


def _mask_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    union = (a | b).sum(1)
    return np.where(union > 0, (a & b).sum(1) / np.maximum(union, 1), 1.0)


# ---------------------------------------------------------------------- the decoder, fp32
def test_supports_sam2_decoders_only(model):
    from segment_anything import sam_model_registry

    assert fast_sam2_decoder.supports(model.sam_mask_decoder)
    sam = sam_model_registry["vit_b"]()  # segment_anything's decoder: another class
    assert not fast_sam2_decoder.supports(sam.mask_decoder)


@pytest.mark.parametrize("multimask", [False, True])
def test_fp32_boxes_equal_sam2s_decoder_on_the_tiny_model(model, embedding, multimask):
    boxes = _boxes(*SIZE, n=9)
    sparse, dense = _prompts(model, SIZE, boxes=boxes)
    ref_low, ref_iou, low, iou = _both(
        model, embedding.image_embed, embedding.high_res_feats, sparse, dense, multimask
    )
    torch.testing.assert_close(low, ref_low, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(iou, ref_iou, atol=1e-5, rtol=1e-5)


def test_fp32_clicks_and_mask_inputs_equal_sam2s_decoder(model, embedding):
    rng = np.random.default_rng(1)
    n = 5
    points = rng.uniform([0, 0], [SIZE[1], SIZE[0]], (n, 3, 2)).astype(np.float32)
    labels = rng.integers(0, 2, (n, 3))
    mask_input = rng.normal(0, 5, (n, 1, 256, 256)).astype(np.float32)
    for kwargs in (
        {"points": points, "labels": labels},
        {"points": points, "labels": labels, "mask_input": mask_input},  # per-prompt dense
        {"boxes": _boxes(*SIZE, n=n), "mask_input": mask_input},
    ):
        sparse, dense = _prompts(model, SIZE, **kwargs)
        for multimask in (False, True):
            ref_low, ref_iou, low, iou = _both(
                model, embedding.image_embed, embedding.high_res_feats, sparse, dense, multimask
            )
            torch.testing.assert_close(low, ref_low, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(iou, ref_iou, atol=1e-5, rtol=1e-5)


def test_fp32_full_size_decoder_with_stable_and_unstable_masks(full_decoder_inputs, monkeypatch):
    full, image_embed, high_res = full_decoder_inputs
    size = (480, 640)
    sparse, dense = _prompts(full, size, boxes=_boxes(*size, n=16))
    # Random features make every mask 0 "unstable" at SAM 2's 0.98; a threshold between the
    # 8th and 9th stability scores (read by both decoders) exercises both single-mask branches.
    scores = _stabilities(full, image_embed, high_res, sparse, dense).sort().values
    assert scores[8] - scores[7] > 1e-3, scores
    thresh = float(scores[7] + scores[8]) / 2
    monkeypatch.setattr(full.sam_mask_decoder, "dynamic_multimask_stability_thresh", thresh)
    for multimask in (False, True):
        ref_low, ref_iou, low, iou = _both(full, image_embed, high_res, sparse, dense, multimask)
        torch.testing.assert_close(low, ref_low, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(iou, ref_iou, atol=1e-5, rtol=1e-5)


def test_one_image_at_a_time(model, embedding):
    sparse, dense = _prompts(model, SIZE, boxes=_boxes(*SIZE, n=2))
    two = embedding.image_embed.expand(2, -1, -1, -1)
    with pytest.raises(ValueError, match=r"one image, \(1, C, h, w\)"):
        fast_sam2_decoder.decode_masks(
            model.sam_mask_decoder,
            two,
            model.sam_prompt_encoder.get_dense_pe(),
            sparse,
            dense,
            embedding.high_res_feats,
            multimask=False,
        )


# ---------------------------------------------------------------------- Sam2Segmenter(fast=True)
def test_fast_fp32_segmenter_matches_the_exact_one(model, exact):
    image, boxes = _image(*SIZE), _boxes(*SIZE, n=16)
    fast = Sam2Segmenter(model, fast=True, dtype="fp32")
    assert fast.fast_decoder and fast.compute_dtype() == torch.float32
    ref = exact.segment(image, _dets(boxes, SIZE))
    out = fast.segment(image, _dets(boxes, SIZE))
    assert fast.stats.encoder_calls == 1 and fast.stats.decoder_calls == 1
    assert fast.stats.prompts_decoded == 16
    # the embedding is computed as exactly as before; only the decoder's sums are reordered
    torch.testing.assert_close(
        fast.embed(image).image_embed, exact.embed(image).image_embed, atol=0, rtol=0
    )
    assert _mask_ious(out.masks, ref.masks).min() >= 0.999
    np.testing.assert_allclose(out.mask_scores, ref.mask_scores, atol=1e-5)
    mask, score, low = fast.segment_points(image, [[200, 150]], [1])
    ref_mask, ref_score, ref_low = exact.segment_points(image, [[200, 150]], [1])
    assert _mask_ious(mask[None], ref_mask[None])[0] >= 0.999
    assert score == pytest.approx(ref_score, abs=1e-5)
    np.testing.assert_allclose(low, ref_low, atol=1e-4)


def test_fast_setting_resolves_the_dtype_for_the_cpu(model, monkeypatch):
    want = torch.bfloat16 if runtime.cpu_has_fast_bf16() else torch.float32
    assert Sam2Segmenter(model, fast=True).compute_dtype() == want
    assert Sam2Segmenter(model).compute_dtype() == torch.float32  # exact by default
    assert not Sam2Segmenter(model).fast_decoder
    monkeypatch.setenv("GROUNDED_SAM_FORCE_FP32", "1")
    assert Sam2Segmenter(model, fast=True, dtype="bf16").compute_dtype() == torch.float32
    with pytest.raises(ValueError, match="unknown dtype"):
        Sam2Segmenter(model, fast=True, dtype="int8")
    assert "fast=True" in repr(Sam2Segmenter(model, fast=True))


@needs_bf16
def test_bf16_fast_segmenter_agrees_with_the_exact_one(model, exact):
    image, boxes = _image(*SIZE), _boxes(*SIZE, n=16)
    fast = Sam2Segmenter(model, fast=True)
    assert fast.compute_dtype() == torch.bfloat16
    embedding = fast.embed(image)
    assert embedding.image_embed.dtype == torch.float32
    assert all(f.dtype == torch.float32 for f in embedding.high_res_feats)
    ref = exact.segment(image, _dets(boxes, SIZE))
    out = fast.segment(image, _dets(boxes, SIZE))
    assert _mask_ious(out.masks, ref.masks).min() >= 0.98
    np.testing.assert_allclose(out.mask_scores, ref.mask_scores, atol=0.02)


@needs_bf16
def test_bf16_full_size_decoder_agrees_with_sam2s(full_decoder_inputs):
    full, image_embed, high_res = full_decoder_inputs
    size = (480, 640)
    sparse, dense = _prompts(full, size, boxes=_boxes(*size, n=16))
    for multimask in (False, True):
        ref_low, ref_iou, low, iou = _both(
            full, image_embed, high_res, sparse, dense, multimask, torch.bfloat16
        )
        ious = _mask_ious((low > 0).numpy(), (ref_low > 0).numpy())
        assert ious.min() >= 0.98, ious
        torch.testing.assert_close(iou, ref_iou, atol=0.02, rtol=0)
