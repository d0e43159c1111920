"""Sam2Segmenter against sam2's own SAM2ImagePredictor and SAM2AutomaticMaskGenerator.

One tiny seeded SAM 2.1 (``grounded_sam.testing.sam2``) serves both sides. SAM 2 always
works at 1024 x 1024, so every encoder pass costs ~1.5 s here: the fixtures embed each image
once per side and the tests share them.
"""

from __future__ import annotations

import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from _boxes import border_boxes as _boxes
from _boxes import detections_for as _dets
from _images import blob_image as _image

pytest.importorskip("sam2", reason="needs the sam2 package: pip install -e '.[sam2]'")

from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator  # noqa: E402
from sam2.sam2_image_predictor import SAM2ImagePredictor  # noqa: E402

from grounded_sam.errors import CheckpointError, MissingCheckpointError  # noqa: E402
from grounded_sam.segmenters.sam2 import Sam2Embedding, Sam2Segmenter  # noqa: E402
from grounded_sam.testing.sam2 import build_tiny_sam2, tiny_sam2, tiny_sam2_checkpoint  # noqa: E402
from grounded_sam.types import Detections  # noqa: E402

SIZES = [(300, 451), (517, 389)]  # non-square, neither side 1024


@pytest.fixture(scope="module")
def model():
    return tiny_sam2(seed=0)


@pytest.fixture(scope="module")
def segmenter(model):
    return Sam2Segmenter(model, cache_size=8)


@pytest.fixture(scope="module")
def predictors(model):
    """One SAM2ImagePredictor per image size, its image set once."""
    out = {}
    for size in SIZES:
        predictor = SAM2ImagePredictor(model)
        predictor.set_image(_image(*size))
        out[size] = predictor
    return out


class _CallCounter:
    """A forward hook recording the batch size of every call of a module."""

    def __init__(self, module: torch.nn.Module):
        self.batches: list[int] = []
        self._handle = module.register_forward_hook(self)

    def __call__(self, module, args, output):
        first = output[0] if isinstance(output, (tuple, list)) else output
        if isinstance(first, dict):  # SAM 2's image encoder returns a dict
            first = first["vision_features"]
        self.batches.append(int(first.shape[0]))

    def remove(self) -> None:
        self._handle.remove()


# ---------------------------------------------------------------------- equality with sam2
@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("size", SIZES)
def test_segment_is_bit_identical_to_the_batched_box_predict(
    segmenter, predictors, size, multimask
):
    image = _image(*size)
    boxes = _boxes(*size, n=7)
    masks, ious, _ = predictors[size].predict(box=boxes, multimask_output=multimask)
    best = ious.argmax(axis=1)
    rows = np.arange(len(boxes))
    out = segmenter.segment(image, _dets(boxes, size), multimask=multimask)
    assert out.masks.dtype == bool and out.masks.shape == (7, *size)
    np.testing.assert_array_equal(out.masks, masks[rows, best])
    np.testing.assert_array_equal(out.mask_scores, ious[rows, best])
    assert out.masks.any() and not out.masks.all()  # the comparison is not vacuous


@pytest.mark.parametrize("size", SIZES)
def test_one_box_is_bit_identical_to_predict(segmenter, predictors, size):
    box = _boxes(*size, n=1)[0]  # the whole image: touches all four borders
    masks, ious, _ = predictors[size].predict(box=box, multimask_output=False)
    out = segmenter.segment(_image(*size), _dets(box[None], size))
    np.testing.assert_array_equal(out.masks[0], masks[0])
    assert out.mask_scores[0] == ious[0]


def test_clicks_and_refinement_are_bit_identical_to_predict(segmenter, predictors):
    size = SIZES[0]
    image, predictor = _image(*size), predictors[size]
    point, label = np.array([[200.5, 120.0]]), np.array([1])

    # one click: three masks, the best one kept
    masks, ious, lows = predictor.predict(point, label, multimask_output=True)
    mask, score, low = segmenter.segment_points(image, point, label)
    best = int(ious.argmax())
    np.testing.assert_array_equal(mask, masks[best])
    assert score == ious[best]
    np.testing.assert_array_equal(low, lows[best][None])

    # a second click refines the first mask through its low-res logits
    points, labels = np.array([[200.5, 120.0], [30.0, 280.0]]), np.array([1, 0])
    masks2, ious2, lows2 = predictor.predict(
        points, labels, mask_input=lows[best][None], multimask_output=False
    )
    mask2, score2, low2 = segmenter.segment_points(image, points, labels, mask_input=low)
    np.testing.assert_array_equal(mask2, masks2[0])
    assert score2 == ious2[0]
    np.testing.assert_array_equal(low2, lows2)

    # a box with a click (the box's corners go before the click, as in sam2)
    box = np.array([0.0, 10.0, 300.0, 300.0])
    masks3, ious3, _ = predictor.predict(point, label, box=box, multimask_output=False)
    mask3, score3, _ = segmenter.segment_points(image, point, label, box=box)
    np.testing.assert_array_equal(mask3, masks3[0])
    assert score3 == ious3[0]


def _object_sam2(scale: float):
    """A tiny random SAM 2 whose masks follow the colour regions of the image.

    A plain random model paints high-frequency textures over the whole image (every box is
    the image, NMS has nothing to decide) with logits of |x| ~ 0.1 (every stability score is
    0). Without positional embeddings, with patch-constant upscaling and logits scaled by
    ``scale``, masks become unions of the coloured rectangles. Both generators run it.
    """
    model = tiny_sam2(seed=0)
    with torch.no_grad():
        model.image_encoder.trunk.pos_embed.zero_()
        model.image_encoder.trunk.pos_embed_window.zero_()
        for mlp in model.sam_mask_decoder.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(scale)
            mlp.layers[-1].bias.mul_(scale)
        for layer in model.sam_mask_decoder.output_upscaling:
            if isinstance(layer, torch.nn.ConvTranspose2d):
                mean = layer.weight.mean(dim=(2, 3), keepdim=True)
                layer.weight.copy_(mean.expand_as(layer.weight))
    return model


def _rectangles(h: int = 160, w: int = 240) -> np.ndarray:
    img = np.full((h, w, 3), 128, np.uint8)
    img[25:55, 35:85] = (250, 30, 30)
    img[25:60, 150:200] = (30, 30, 250)
    img[100:140, 40:80] = (30, 220, 40)
    img[105:135, 145:205] = (240, 240, 30)
    return img


@pytest.mark.parametrize(
    "scale, options",
    [
        # quality filters on, lowered (random weights fail SAM 2's defaults): 4 masks survive
        (300.0, dict(points_per_side=6, pred_iou_thresh=0.4, stability_score_thresh=0.5)),
        # filters off: 71 masks, many duplicates for NMS to remove, some empty
        (-300.0, dict(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0)),
        # one crop layer: 4 more crops (each embedded), masks merged across crops
        (
            300.0,
            dict(
                points_per_side=4,
                pred_iou_thresh=0.4,
                stability_score_thresh=0.5,
                crop_n_layers=1,
            ),
        ),
    ],
)
def test_generate_finds_the_same_masks_as_sam2s_generator(scale, options):
    model, image = _object_sam2(scale), _rectangles()
    reference = SAM2AutomaticMaskGenerator(model, **options).generate(image)
    ours = Sam2Segmenter(model).generate(image, **options)
    assert len(reference) >= 3
    if options.get("crop_n_layers"):  # at least one mask comes from a crop, not the image
        assert (ours.data["crop_box"] != [0, 0, 240, 160]).any(axis=1).any()
    assert ours.masks.shape == (len(reference), *image.shape[:2])
    assert Counter(m.tobytes() for m in ours.masks) == Counter(
        r["segmentation"].tobytes() for r in reference
    )
    mine = sorted(range(len(ours)), key=lambda i: (ours.masks[i].tobytes(), float(ours.scores[i])))
    theirs = sorted(reference, key=lambda r: (r["segmentation"].tobytes(), r["predicted_iou"]))
    for i, r in zip(mine, theirs, strict=True):
        assert float(ours.mask_scores[i]) == r["predicted_iou"]
        assert float(ours.data["stability_score"][i]) == pytest.approx(
            r["stability_score"], rel=1e-6, nan_ok=True
        )
        x, y, w, h = r["bbox"]  # XYWH of the inclusive pixel box
        if r["area"] > 0:
            np.testing.assert_array_equal(ours.xyxy[i], [x, y, x + w + 1, y + h + 1])


def test_generate_refuses_what_it_does_not_do(segmenter):
    image = _image(64, 80)
    with pytest.raises(ValueError, match="use_m2m"):
        segmenter.generate(image, use_m2m=True)
    with pytest.raises(ValueError, match="mask_threshold"):
        segmenter.generate(image, mask_threshold=1.0)


# ---------------------------------------------------------------------- how the work is done
def test_one_encoder_pass_per_image_and_16_boxes_in_one_decoder_call(model):
    seg = Sam2Segmenter(model)
    size = SIZES[1]
    image = _image(*size)
    encoder = _CallCounter(model.image_encoder)
    decoder = _CallCounter(model.sam_mask_decoder)
    try:
        first = seg.segment(image, _dets(_boxes(*size, n=16, seed=1), size))
        second = seg.segment(image.copy(), _dets(_boxes(*size, n=16, seed=2), size))
        seg.segment_points(image, [[10, 20]], [1])
    finally:
        encoder.remove()
        decoder.remove()
    assert encoder.batches == [1]
    assert decoder.batches == [16, 16, 1]
    assert seg.stats.encoder_calls == 1 and seg.stats.cache_hits == 2
    assert len(first) == len(second) == 16


def test_embedding_is_a_cached_value(segmenter):
    image = _image(*SIZES[0])
    emb = segmenter.embed(image)
    assert isinstance(emb, Sam2Embedding)
    assert emb.original_size == SIZES[0]
    assert emb.image_embed.shape == (1, 32, 64, 64)
    assert [tuple(f.shape) for f in emb.high_res_feats] == [(1, 4, 256, 256), (1, 8, 128, 128)]
    assert segmenter.embed(image.copy()) is emb


def test_four_threads_give_the_serial_results(model, segmenter):
    jobs = [(size, seed) for size in SIZES for seed in (5, 6)]

    def run(seg, job):
        size, seed = job
        return seg.segment(_image(*size), _dets(_boxes(*size, n=5, seed=seed), size))

    serial = [run(segmenter, job) for job in jobs]
    shared = Sam2Segmenter(model)
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda job: run(shared, job), jobs))
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a.masks, b.masks)
        np.testing.assert_array_equal(a.mask_scores, b.mask_scores)


# ---------------------------------------------------------------------- edges and errors
def test_empty_detections_and_wrong_image(segmenter):
    size = SIZES[0]
    out = segmenter.segment(_image(*size), Detections.empty(size))
    assert out.masks.shape == (0, *size) and out.mask_scores.shape == (0,)
    with pytest.raises(ValueError, match="pass the image the detections were made on"):
        segmenter.segment(_image(*SIZES[1]), _dets(_boxes(*size, n=2), size))


def test_bad_prompts_are_explained(segmenter):
    emb = segmenter.embed(_image(*SIZES[0]))
    with pytest.raises(ValueError, match=re.escape("boxes must be (B, 4) xyxy")):
        segmenter.decode(emb, boxes=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="disagree on the batch size"):
        segmenter.decode(
            emb, boxes=np.zeros((2, 4)), points=np.zeros((3, 1, 2)), point_labels=np.ones((3, 1))
        )
    with pytest.raises(ValueError, match="a prompt is needed"):
        segmenter.decode(emb)


def test_checkpoint_round_trip_and_strict_errors(model, tmp_path):
    path = tiny_sam2_checkpoint(tmp_path / "tiny_sam2.pt", seed=0)
    loaded = Sam2Segmenter.from_checkpoint("tiny", path, builder=build_tiny_sam2)
    theirs = loaded.model.state_dict()
    assert theirs.keys() == model.state_dict().keys()
    for name, a in model.state_dict().items():
        assert torch.equal(a, theirs[name]), name
    with pytest.raises(MissingCheckpointError, match="sam2.1_hiera_tiny"):
        Sam2Segmenter.from_checkpoint("sam2.1_hiera_tiny", tmp_path / "absent.pt")
    with pytest.raises(CheckpointError, match="shape mismatches"):
        Sam2Segmenter.from_checkpoint("sam2.1_hiera_tiny", path)
    with pytest.raises(ValueError, match="unknown SAM 2 model_type"):
        Sam2Segmenter.from_checkpoint("sam2_huge", path)
