"""SamSegmenter against segment_anything's own SamPredictor, on a tiny seeded SAM."""

from __future__ import annotations

import importlib.util
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from _boxes import border_boxes as _boxes
from _boxes import detections_for as _dets
from _images import blob_image as _image
from segment_anything import SamPredictor

from grounded_sam.errors import CheckpointError, MissingCheckpointError
from grounded_sam.segmenters.sam import ImageEmbedding, SamSegmenter
from grounded_sam.testing.sam import build_tiny_sam, tiny_sam, tiny_sam_checkpoint
from grounded_sam.types import Detections

SIZES = [(300, 500), (731, 211)]


@pytest.fixture(scope="module")
def sam():
    return tiny_sam(seed=0)


@pytest.fixture(scope="module")
def predictor(sam):
    return SamPredictor(sam)


def _reference(predictor, image, boxes, multimask=False):
    predictor.set_image(image)
    boxes_t = predictor.transform.apply_boxes_torch(torch.from_numpy(boxes), image.shape[:2])
    return predictor.predict_torch(None, None, boxes=boxes_t, multimask_output=multimask)


class _CallCounter:
    """A forward hook recording the batch size of every call of a module."""

    def __init__(self, module: torch.nn.Module):
        self.batches: list[int] = []
        self._handle = module.register_forward_hook(self)

    def __call__(self, module, args, output):
        first = output[0] if isinstance(output, tuple) else output
        self.batches.append(int(first.shape[0]))

    def remove(self) -> None:
        self._handle.remove()


# ---------------------------------------------------------------------- equality with SAM
@pytest.mark.parametrize("size", SIZES)
def test_segment_is_bit_identical_to_sam_predictor(sam, predictor, size):
    image = _image(*size)
    boxes = _boxes(*size, n=7)
    seg = SamSegmenter(sam)

    out = seg.segment(image, _dets(boxes, size))
    masks, iou, _ = _reference(predictor, image, boxes)

    assert out.masks.dtype == bool and out.masks.shape == (7, *size)
    assert np.array_equal(out.masks, masks[:, 0].numpy())
    assert np.array_equal(out.mask_scores, iou[:, 0].numpy())
    # the masks are not trivial: they differ between boxes and are neither empty nor full
    assert 0.0 < out.masks.mean() < 1.0
    assert len({m.tobytes() for m in out.masks}) > 1
    # everything else is carried over unchanged
    assert np.array_equal(out.xyxy, boxes)
    assert out.phrases == [f"thing {i}" for i in range(7)]
    assert np.array_equal(out.class_id, np.arange(7) % 2)
    # the embedding is SamPredictor's, bit for bit
    emb = seg.embed(image)
    assert isinstance(emb, ImageEmbedding)
    assert torch.equal(emb.features, predictor.features)
    assert emb.input_size == predictor.input_size and emb.original_size == size


def test_multimask_keeps_the_mask_with_highest_predicted_iou(sam, predictor):
    size = SIZES[0]
    image, boxes = _image(*size, seed=1), _boxes(*size, n=6, seed=1)
    out = SamSegmenter(sam).segment(image, _dets(boxes, size), multimask=True)

    masks, iou, _ = _reference(predictor, image, boxes, multimask=True)
    best = iou.argmax(dim=1)
    assert len(set(best.tolist())) > 1 or iou.shape[1] == 3  # real choice among 3 masks
    assert np.array_equal(out.mask_scores, iou.max(dim=1).values.numpy())
    assert np.array_equal(out.masks, masks[torch.arange(6), best].numpy())


def test_float64_points_follow_the_automatic_mask_generator_path(sam, predictor):
    # SamAutomaticMaskGenerator scales float64 points with numpy and feeds them as float64.
    size = SIZES[1]
    image = _image(*size, seed=2)
    seg = SamSegmenter(sam)
    pts = np.array([[[10.0, 20.0]], [[100.5, 300.25]], [[210.0, 730.0]]])  # (B=3, K=1, 2)

    low, iou = seg.decode(
        seg.embed(image), points=pts, point_labels=np.ones((3, 1), int), multimask=True
    )

    predictor.set_image(image)
    ref_pts = torch.as_tensor(predictor.transform.apply_coords(pts[:, 0], size))
    _, ref_iou, ref_low = predictor.predict_torch(
        ref_pts[:, None, :], torch.ones(3, 1, dtype=torch.int), multimask_output=True
    )
    assert ref_pts.dtype == torch.float64
    assert low.shape == (3, 3, 256, 256) and iou.shape == (3, 3)
    assert low.dtype == torch.float32 and iou.dtype == torch.float32
    assert torch.equal(low, ref_low) and torch.equal(iou, ref_iou)


# ---------------------------------------------------------------------- work done
def test_one_encoder_pass_per_image_and_one_decoder_call_for_16_boxes(sam):
    size = SIZES[0]
    image, boxes = _image(*size, seed=3), _boxes(*size, n=16, seed=3)
    seg = SamSegmenter(sam)
    enc, dec = _CallCounter(sam.image_encoder), _CallCounter(sam.mask_decoder)
    try:
        first = seg.segment(image, _dets(boxes, size))
        assert enc.batches == [1]
        assert dec.batches == [16]
        # same image again, even as a different array object: no second encoder pass
        second = seg.segment(image.copy(), _dets(boxes, size))
        assert enc.batches == [1]
        assert dec.batches == [16, 16]
        # a different image is encoded
        seg.embed(_image(*size, seed=4))
        assert enc.batches == [1, 1]
    finally:
        enc.remove()
        dec.remove()
    assert np.array_equal(first.masks, second.masks)
    assert seg.stats.encoder_calls == 2 and seg.stats.decoder_calls == 2
    assert seg.stats.cache_hits == 1 and seg.stats.prompts_decoded == 32


def test_cache_is_a_bounded_lru_by_content(sam):
    seg = SamSegmenter(sam, cache_size=2)
    a, b, c = (_image(40, 60, seed=s) for s in (10, 11, 12))
    ka, kb, kc = (seg.embed(x).key for x in (a, b, c))
    assert len({ka, kb, kc}) == 3
    assert seg.cache.keys() == [kb, kc]  # a was evicted
    assert seg.embed(b) is seg.embed(b.copy())  # hit, same value object
    seg.embed(a)
    assert seg.stats.encoder_calls == 4
    seg.clear_cache()
    assert len(seg.cache) == 0

    no_cache = SamSegmenter(sam, cache_size=0)
    no_cache.embed(a)
    no_cache.embed(a)
    assert no_cache.stats.encoder_calls == 2


def test_chunking_gives_the_same_masks_as_one_call(sam):
    size = SIZES[1]
    image, boxes = _image(*size, seed=5), _boxes(*size, n=10, seed=5)
    one = SamSegmenter(sam)
    chunked = SamSegmenter(sam, max_batch=4)
    dec = _CallCounter(sam.mask_decoder)
    try:
        a = one.segment(image, _dets(boxes, size))
        b = chunked.segment(image, _dets(boxes, size))
    finally:
        dec.remove()
    assert dec.batches == [10, 4, 4, 2]
    assert np.array_equal(a.masks, b.masks)
    np.testing.assert_allclose(a.mask_scores, b.mask_scores, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------- edge cases
def test_zero_boxes_run_no_model(sam):
    size = (50, 70)
    seg = SamSegmenter(sam)
    enc, dec = _CallCounter(sam.image_encoder), _CallCounter(sam.mask_decoder)
    try:
        out = seg.segment(_image(*size), Detections.empty(size))
    finally:
        enc.remove()
        dec.remove()
    assert enc.batches == [] and dec.batches == []
    assert out.masks.shape == (0, 50, 70) and out.masks.dtype == bool
    assert out.mask_scores.shape == (0,) and out.mask_scores.dtype == np.float32
    assert len(out) == 0

    # decode with B = 0 returns empty tensors of the right shape
    low, iou = seg.decode(seg.embed(_image(*size)), boxes=np.zeros((0, 4)), multimask=True)
    assert low.shape == (0, 3, 256, 256) and iou.shape == (0, 3)


def test_degenerate_and_outside_boxes_get_masks_without_crashing(sam, predictor):
    h, w = size = (120, 160)
    image = _image(*size, seed=6)
    boxes = np.array(
        [
            [10, 10, 10, 50],  # zero width
            [5, 5, 5, 5],  # a point
            [w + 10, h + 10, w + 50, h + 60],  # entirely outside, bottom right
            [-50, -40, -10, -5],  # entirely outside, top left
            [w, 0, w, h],  # on the right border, zero width
            [-20, -30, 50, 60],  # partly outside
            [100, 70, w + 40, h + 90],  # partly outside
        ],
        np.float32,
    )
    out = SamSegmenter(sam).segment(image, _dets(boxes, size))
    assert out.masks.shape == (7, h, w)
    assert np.isfinite(out.mask_scores).all()
    assert np.array_equal(out.xyxy, boxes)  # boxes are reported as given

    # SAM sees the boxes clipped to the image, degenerate ones widened to 1 px inside it
    as_decoded = np.array(
        [
            [9.5, 10, 10.5, 50],
            [4.5, 4.5, 5.5, 5.5],
            [w - 1, h - 1, w, h],
            [0, 0, 1, 1],
            [w - 1, 0, w, h],
            [0, 0, 50, 60],
            [100, 70, w, h],
        ],
        np.float32,
    )
    masks, iou, _ = _reference(predictor, image, as_decoded)
    assert np.array_equal(out.masks, masks[:, 0].numpy())
    assert np.array_equal(out.mask_scores, iou[:, 0].numpy())


def test_detections_of_another_image_size_are_refused(sam):
    with pytest.raises(ValueError, match=re.escape("(H, W) = (10, 10)")):
        SamSegmenter(sam).segment(_image(20, 30), _dets(np.array([[0, 0, 5, 5]]), (10, 10)))


# ---------------------------------------------------------------------- interactive points
def test_single_click_then_refinement_with_mask_input(sam, predictor):
    size = SIZES[0]
    image = _image(*size, seed=7)
    seg = SamSegmenter(sam)
    predictor.set_image(image)
    tf = predictor.transform

    mask, score, low = seg.segment_points(image, [[120, 80]], [1])

    pts = tf.apply_coords_torch(torch.tensor([[[120.0, 80.0]]]), size)
    ref_masks, ref_iou, ref_low = predictor.predict_torch(
        pts, torch.ones(1, 1, dtype=torch.int), multimask_output=True
    )
    best = int(ref_iou[0].argmax())
    assert mask.shape == size and mask.dtype == bool
    assert np.array_equal(mask, ref_masks[0, best].numpy())
    assert score == float(ref_iou[0, best])
    assert low.shape == (1, 256, 256) and low.dtype == np.float32
    assert np.array_equal(low, ref_low[0, best][None].numpy())

    # second round: one more (background) click plus the previous logits -> one mask
    mask2, score2, low2 = seg.segment_points(image, [[120, 80], [300, 200]], [1, 0], mask_input=low)
    pts2 = tf.apply_coords_torch(torch.tensor([[[120.0, 80.0], [300.0, 200.0]]]), size)
    labels2 = torch.tensor([[1, 0]], dtype=torch.int)
    r_masks, r_iou, r_low = predictor.predict_torch(
        pts2, labels2, mask_input=torch.from_numpy(low)[None], multimask_output=False
    )
    assert np.array_equal(mask2, r_masks[0, 0].numpy())
    assert score2 == float(r_iou[0, 0])
    assert np.array_equal(low2, r_low[0].numpy())
    # the previous logits really took part
    _, _, without = seg.segment_points(image, [[120, 80], [300, 200]], [1, 0])
    assert not np.array_equal(low2, without)

    # a box alone works too, and bad clicks are refused with a clear message
    box_mask, _, _ = seg.segment_points(image, np.zeros((0, 2)), [], box=[50, 40, 200, 150])
    assert box_mask.shape == size
    with pytest.raises(ValueError, match="labels must be 1"):
        seg.segment_points(image, [[1, 2]], [2])
    with pytest.raises(ValueError, match="at least one point"):
        seg.segment_points(image, np.zeros((0, 2)), [])


def test_decode_validates_prompts(sam):
    seg = SamSegmenter(sam)
    emb = seg.embed(_image(40, 50))
    with pytest.raises(ValueError, match="together"):
        seg.decode(emb, points=np.zeros((1, 1, 2)))
    with pytest.raises(ValueError, match="disagree on the batch size"):
        seg.decode(
            emb, points=np.zeros((2, 1, 2)), point_labels=np.ones((2, 1)), boxes=[[0, 0, 5, 5]]
        )
    with pytest.raises(ValueError, match=re.escape("mask_input must be (B, 1, 256, 256)")):
        seg.decode(emb, mask_input=np.zeros((1, 64, 64)))
    with pytest.raises(ValueError, match="a prompt is needed"):
        seg.decode(emb)
    low, _ = seg.decode(emb, boxes=[[0, 0, 10, 10], [5, 5, 20, 30]])
    up = seg.upscale_masks(low, emb)
    assert up.shape == (2, 1, 40, 50) and up.dtype == torch.float32


# ---------------------------------------------------------------------- threads
def test_threads_sharing_one_segmenter_get_their_own_results(sam):
    images = [_image(*s, seed=20 + i) for i, s in enumerate([(90, 120), (130, 70), (64, 64)])]
    dets = [_dets(_boxes(*im.shape[:2], n=3, seed=i), im.shape[:2]) for i, im in enumerate(images)]
    serial = [
        SamSegmenter(sam, cache_size=0).segment(im, d) for im, d in zip(images, dets, strict=True)
    ]

    shared = SamSegmenter(sam, cache_size=1)  # tiny cache: evictions race with lookups
    jobs = [0, 1, 2, 2, 1, 0, 1, 2]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda i: (i, shared.segment(images[i], dets[i])), jobs))
    for i, out in results:
        assert out.image_size == serial[i].image_size
        assert np.array_equal(out.masks, serial[i].masks)
        assert np.array_equal(out.mask_scores, serial[i].mask_scores)


# ---------------------------------------------------------------------- construction
def test_from_checkpoint_loads_the_weights(tmp_path):
    path = tiny_sam_checkpoint(tmp_path / "tiny.pth", seed=3)
    seg = SamSegmenter.from_checkpoint("tiny", path, builder=build_tiny_sam, max_batch=8)
    want = tiny_sam(seed=3).state_dict()
    got = seg.sam.state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert not seg.sam.training and seg.max_batch == 8 and seg.device == torch.device("cpu")


def test_from_checkpoint_missing_file_names_it_and_the_download_command(tmp_path):
    path = tmp_path / "sam_vit_b_01ec64.pth"
    with pytest.raises(MissingCheckpointError) as info:
        SamSegmenter.from_checkpoint("vit_b", path)  # fails before building vit_b
    assert str(path) in str(info.value)
    assert "grounded-sam download sam_vit_b" in str(info.value)
    with pytest.raises(ValueError, match="unknown SAM model_type 'vit_x'"):
        SamSegmenter.from_checkpoint("vit_x", path)


def test_from_checkpoint_with_extra_or_missing_keys_lists_them(tmp_path):
    sd = tiny_sam(seed=0).state_dict()
    del sd["mask_decoder.iou_token.weight"]
    sd["image_encoder.extra.weight"] = torch.zeros(2)
    path = tmp_path / "bad.pth"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError) as info:
        SamSegmenter.from_checkpoint("tiny", path, builder=build_tiny_sam)
    msg = str(info.value)
    assert "missing keys (1: mask_decoder.iou_token.weight)" in msg
    assert "unexpected keys (1: image_encoder.extra.weight)" in msg


@pytest.mark.cpu_kind
def test_reduced_precision_encoder_and_options(sam):
    image = _image(60, 80, seed=8)
    full = SamSegmenter(sam).embed(image).features
    seg = SamSegmenter(sam, dtype="bf16")
    assert seg.dtype == torch.bfloat16
    half = seg.embed(image).features
    assert half.dtype == torch.float32 and half.shape == full.shape
    assert not torch.equal(half, full)  # the encoder really ran in bfloat16 …
    rel = (half - full).norm() / full.norm()
    assert rel < 0.1  # … and still computes the same thing
    with pytest.raises(ValueError, match="unknown dtype"):
        SamSegmenter(sam, dtype="int8")
    with pytest.raises(ValueError, match="max_batch"):
        SamSegmenter(sam, max_batch=0)


@pytest.mark.cpu_kind
def test_fast_flag_is_applied_lazily(sam):
    image = _image(30, 40)
    plain = SamSegmenter(sam).embed(image).features
    # own model: optimize_sam changes it in place
    seg = SamSegmenter(tiny_sam(seed=0), fast=True, dtype="fp32")
    assert seg.fast
    if importlib.util.find_spec("grounded_sam.segmenters.fast_sam") is None:
        with pytest.raises(RuntimeError, match="fast=False"):
            seg.embed(image)
    else:
        fast = seg.embed(image).features
        assert fast.dtype == torch.float32 and fast.shape == plain.shape
        torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-4)
