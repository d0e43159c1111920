"""generate_masks against segment_anything's SamAutomaticMaskGenerator, same weights and settings."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from segment_anything import SamAutomaticMaskGenerator

from grounded_sam.segmenters.amg import _pack, _unpack, generate_masks
from grounded_sam.segmenters.sam import SamSegmenter
from grounded_sam.testing.sam import tiny_sam

torch.set_num_threads(2)

H, W = 160, 240  # not square: the 1024 frame is padded, crops are rectangles


def object_sam():
    """A tiny random SAM whose masks follow the colour regions of the image.

    A plain random SAM paints high-frequency textures over the whole image, so every box is
    the image and NMS or the crop-edge filter have nothing to decide. Here the encoder sees
    content only (no positional embeddings, global attention, a 1x1 neck), the upscaling is
    patch-constant and the logits are scaled up: masks become unions of coloured rectangles,
    with boxes of different sizes. Both generators run these same weights.
    """
    sam = tiny_sam(seed=0, depth=1, global_attn_indexes=(0,))
    with torch.no_grad():
        enc = sam.image_encoder
        enc.pos_embed.zero_()
        for block in enc.blocks:
            block.attn.use_rel_pos = False
        for i, layer in enumerate(enc.neck):
            if isinstance(layer, torch.nn.Conv2d) and layer.kernel_size == (3, 3):
                pointwise = torch.nn.Conv2d(layer.in_channels, layer.out_channels, 1, bias=False)
                pointwise.weight.copy_(3 * layer.weight[:, :, 1:2, 1:2])
                enc.neck[i] = pointwise
        for mlp in sam.mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(-300)
            mlp.layers[-1].bias.mul_(-300)
        for layer in sam.mask_decoder.output_upscaling:
            if isinstance(layer, torch.nn.ConvTranspose2d):
                mean = layer.weight.mean(dim=(2, 3), keepdim=True)
                layer.weight.copy_(mean.expand_as(layer.weight))
    return sam


@pytest.fixture(scope="module")
def sam():
    return object_sam()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """Grey, one coloured rectangle in each quadrant (so each layer-1 crop holds one)."""
    img = np.full((H, W, 3), 128, np.uint8)
    img[25:55, 35:85] = (250, 30, 30)
    img[25:60, 150:200] = (30, 30, 250)
    img[100:140, 40:80] = (30, 220, 40)
    img[105:135, 145:205] = (240, 240, 30)
    return img


def reference(sam, image, **settings) -> list[dict]:
    return SamAutomaticMaskGenerator(sam, **settings).generate(image)


def assert_same_masks(ours, ref: list[dict]) -> None:
    """The same multiset of masks, and for each mask the same score, stability, box, point."""
    assert ours.masks.shape == (len(ref), H, W) and ours.masks.dtype == bool
    assert Counter(m.tobytes() for m in ours.masks) == Counter(
        r["segmentation"].tobytes() for r in ref
    )
    # Pair records by (mask, predicted IoU): equal masks may come from different points.
    mine = sorted(range(len(ours)), key=lambda i: (ours.masks[i].tobytes(), float(ours.scores[i])))
    theirs = sorted(ref, key=lambda r: (r["segmentation"].tobytes(), r["predicted_iou"]))
    for i, r in zip(mine, theirs, strict=True):
        np.testing.assert_array_equal(ours.masks[i], r["segmentation"])
        np.testing.assert_allclose(ours.scores[i], r["predicted_iou"], rtol=1e-6)
        np.testing.assert_allclose(ours.mask_scores[i], r["predicted_iou"], rtol=1e-6)
        np.testing.assert_allclose(
            ours.data["stability_score"][i], r["stability_score"], rtol=1e-6, equal_nan=True
        )
        x, y, w, h = r["bbox"]  # SAM: XYWH of the inclusive pixel box
        if r["area"] > 0:
            np.testing.assert_array_equal(ours.xyxy[i], [x, y, x + w + 1, y + h + 1])
        else:
            np.testing.assert_array_equal(ours.xyxy[i], [0, 0, 0, 0])
        np.testing.assert_allclose(ours.data["point_coords"][i], r["point_coords"][0], rtol=1e-6)
        cx, cy, cw, ch = r["crop_box"]
        np.testing.assert_array_equal(ours.data["crop_box"][i], [cx, cy, cx + cw, cy + ch])
    assert ours.phrases == [""] * len(ref)
    assert ours.class_id.dtype == np.int64 and (ours.class_id == -1).all()
    assert ours.image_size == (H, W)


@pytest.mark.parametrize(
    "settings",
    [
        dict(pred_iou_thresh=0.0, stability_score_thresh=0.0),
        dict(pred_iou_thresh=0.1, stability_score_thresh=0.15),
        dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=0.95),
    ],
    ids=["no-quality-filter", "quality-filters", "loose-nms"],
)
def test_same_masks_as_segment_anything(sam, image, settings):
    settings = dict(points_per_side=4, **settings)
    ref = reference(sam, image, **settings)
    assert sum(r["area"] > 0 for r in ref) >= 2  # the comparison has something to compare
    ours = SamSegmenter(sam).generate(image, **settings)
    assert_same_masks(ours, ref)


def test_same_masks_with_a_crop_layer(sam, image):
    settings = dict(
        points_per_side=2, crop_n_layers=1, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    ref = reference(sam, image, **settings)
    from_crops = [r for r in ref if r["crop_box"] != [0, 0, W, H] and r["area"] > 0]
    assert len(ref) >= 2 and from_crops  # crops contribute masks that survive crop NMS
    ours = generate_masks(SamSegmenter(sam, cache_size=8), image, **settings)
    assert_same_masks(ours, ref)


def test_same_masks_with_small_region_cleanup(sam, image):
    settings = dict(
        points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, min_mask_region_area=40
    )
    ref = reference(sam, image, **settings)
    assert len(ref) >= 2
    assert_same_masks(SamSegmenter(sam).generate(image, **settings), ref)


def test_batch_size_and_explicit_grids_do_not_change_the_result(sam, image):
    seg = SamSegmenter(sam)
    base = seg.generate(image, points_per_side=3, pred_iou_thresh=0, stability_score_thresh=0)
    small = seg.generate(
        image, points_per_side=3, points_per_batch=4, pred_iou_thresh=0, stability_score_thresh=0
    )
    offset = 1 / 6
    side = np.linspace(offset, 1 - offset, 3)
    grid = np.stack(np.meshgrid(side, side), axis=-1).reshape(-1, 2)
    explicit = seg.generate(
        image,
        points_per_side=None,
        point_grids=[grid],
        pred_iou_thresh=0,
        stability_score_thresh=0,
    )
    np.testing.assert_array_equal(explicit.masks, base.masks)  # the same grid, the same batches
    np.testing.assert_array_equal(explicit.scores, base.scores)
    # Other decoder batch sizes change the arithmetic by float rounding only.
    assert len(small) == len(base)
    np.testing.assert_allclose(small.scores, base.scores, rtol=1e-5)
    assert (small.masks == base.masks).mean() > 0.999


def test_upscaling_in_small_chunks_changes_nothing(sam, image, monkeypatch):
    from grounded_sam.segmenters import amg

    seg = SamSegmenter(sam)
    settings = dict(points_per_side=3, pred_iou_thresh=0, stability_score_thresh=0.3)
    settings["stability_score_offset"] = 0.5
    whole = seg.generate(image, **settings)
    monkeypatch.setattr(amg, "_UPSCALE_BUDGET", 1)  # one mask at a time
    chunked = seg.generate(image, **settings)
    assert len(whole) >= 2
    np.testing.assert_array_equal(chunked.masks, whole.masks)
    np.testing.assert_array_equal(chunked.scores, whole.scores)
    np.testing.assert_array_equal(chunked.data["stability_score"], whole.data["stability_score"])


def test_reuses_the_cached_embedding(sam, image):
    calls = []
    hook = sam.image_encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        seg = SamSegmenter(sam, cache_size=8)
        seg.embed(image)
        assert len(calls) == 1
        seg.generate(image, points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0)
        assert len(calls) == 1  # no second encoder pass for the whole image
        seg.generate(image, points_per_side=1, crop_n_layers=1)
        assert len(calls) == 1 + 4  # the four crops of layer 1, the image itself cached
        seg.generate(image, points_per_side=1, crop_n_layers=1)
        assert len(calls) == 5
    finally:
        hook.remove()


def test_nothing_survives_gives_empty_detections(sam, image):
    seg = SamSegmenter(sam, cache_size=8)
    out = seg.generate(image, points_per_side=2, pred_iou_thresh=10.0)
    assert len(out) == 0
    assert out.masks.shape == (0, H, W) and out.xyxy.shape == (0, 4)
    assert out.image_size == (H, W)
    assert out.data["stability_score"].shape == (0,)
    # also when only crops were tried and all failed (segment_anything raises here)
    out = seg.generate(image, points_per_side=1, crop_n_layers=1, pred_iou_thresh=10)
    assert out.masks.shape == (0, H, W)


def test_bad_settings_are_explained(sam, image):
    seg = SamSegmenter(sam)
    with pytest.raises(ValueError, match="exactly one of points_per_side"):
        seg.generate(image, points_per_side=None)
    with pytest.raises(ValueError, match="one per layer"):
        seg.generate(image, points_per_side=None, point_grids=[np.zeros((1, 2))], crop_n_layers=1)


@pytest.mark.parametrize("shape", [(3, 5, 7), (2, 8, 8), (1, 1, 1), (0, 4, 6)])
def test_bit_packing_round_trip(shape):
    masks = torch.from_numpy(np.random.default_rng(0).random(shape) > 0.5)
    assert torch.equal(_unpack(_pack(masks), *shape[1:]), masks)
