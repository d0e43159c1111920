"""sam_decoding: the fast decoder's binding, upscaling to the original size, chunked masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _images import blob_image

from grounded_sam.segmenters import sam_decoding
from grounded_sam.segmenters.sam import SamSegmenter
from grounded_sam.segmenters.sam_decoding import binary_masks, fast_decode_fn, upscale_to_original
from grounded_sam.testing.sam import tiny_sam

pytestmark = pytest.mark.cpu_kind  # run again under an AVX2 cap (scripts/test.sh)

torch.set_num_threads(2)


def _decoded(h: int = 70, w: int = 110, n: int = 5):
    sam = tiny_sam(seed=0)
    seg = SamSegmenter(sam)
    emb = seg.embed(blob_image(h, w, seed=4))
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(0, w, (n, 2)), axis=1)
    y = np.sort(rng.uniform(0, h, (n, 2)), axis=1)
    boxes = torch.tensor(np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], 1), dtype=torch.float32)
    low, iou = seg.decode(emb, boxes=boxes)
    return sam, emb, low, iou


def test_upscale_exact_is_sams_postprocess_and_fast_is_close():
    sam, emb, low, _ = _decoded()
    exact = upscale_to_original(low, emb, sam.image_encoder.img_size, fast=False)
    with torch.no_grad():
        ref = sam.postprocess_masks(low, emb.input_size, emb.original_size)
    assert exact.shape == (5, 1, 70, 110) and torch.equal(exact, ref)
    fast = upscale_to_original(low, emb, sam.image_encoder.img_size, fast=True)
    assert fast.shape == exact.shape
    agree = ((fast > 0) == (exact > 0)).float().mean()
    assert agree > 0.95  # one bilinear resampling instead of two: edges differ


def test_binary_masks_in_chunks_equal_one_pass(monkeypatch):
    sam, emb, low, _ = _decoded()
    calls: list[int] = []

    def upscale(x: torch.Tensor) -> torch.Tensor:
        calls.append(len(x))
        return upscale_to_original(x, emb, sam.image_encoder.img_size, fast=False)

    whole = binary_masks(upscale, low[:, 0], emb.original_size, 0.0)
    assert calls == [5] and whole.dtype == bool and whole.shape == (5, 70, 110)
    np.testing.assert_array_equal(whole, (upscale(low)[:, 0] > 0).numpy())
    monkeypatch.setattr(sam_decoding, "_UPSCALE_BUDGET", 1)  # one mask at a time
    calls.clear()
    np.testing.assert_array_equal(binary_masks(upscale, low[:, 0], emb.original_size, 0.0), whole)
    assert calls == [1] * 5
    empty = binary_masks(upscale, low[:0, 0], emb.original_size, 0.0)
    assert empty.shape == (0, 70, 110)


def test_fast_decode_fn_binds_sams_mask_decoder_only():
    sam, emb, _, _ = _decoded()
    cpu = torch.device("cpu")
    assert fast_decode_fn(torch.nn.Linear(2, 2), cpu, "fp32") is None
    decode = fast_decode_fn(sam.mask_decoder, cpu, "fp32")
    assert decode is not None
    boxes = torch.tensor([[[10.0, 20.0], [300.0, 400.0]]])
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
        pe = sam.prompt_encoder.get_dense_pe()
        low, iou = decode(emb.features, pe, sparse, dense, True)
        ref_low, ref_iou = sam.mask_decoder(emb.features, pe, sparse, dense, True)
    assert low.shape == ref_low.shape == (1, 3, 256, 256) and iou.shape == (1, 3)
    assert low.dtype == iou.dtype == torch.float32
    torch.testing.assert_close(low, ref_low, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(iou, ref_iou, rtol=1e-4, atol=1e-4)
