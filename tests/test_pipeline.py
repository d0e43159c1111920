"""Pipeline with tiny random Grounding DINO / CLIP and SAM models: steps, options, one embedding."""

from __future__ import annotations

import json

import numpy as np
import pytest

import grounded_sam as gs
from grounded_sam.masks import mask_area, masks_to_xyxy
from grounded_sam.pipeline import Pipeline

CLASSES = ["cat", "dog"]
PROMPT = "cat . dog"


@pytest.fixture(scope="module")
def torch_threads():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def detector(tmp_path_factory, torch_threads):
    from grounded_sam.testing.grounding_dino import tiny_grounding_dino

    model, processor = tiny_grounding_dino(tmp_path_factory.mktemp("gd"), words=CLASSES)
    # random weights: thresholds at 0 so that every query comes out as a detection
    return gs.GroundingDinoDetector(model, processor, box_threshold=0.0, text_threshold=0.0)


def make_segmenter():
    from grounded_sam.testing.sam import tiny_sam

    # no global attention: the tiny encoder then takes ~0.1 s on a CPU instead of ~1.5 s
    return gs.SamSegmenter(tiny_sam(seed=0, global_attn_indexes=()))


def count_encoder_calls(segmenter) -> list[int]:
    calls = [0]

    def hook(module, inputs, output):
        calls[0] += 1

    segmenter.sam.image_encoder.register_forward_hook(hook)
    return calls


def random_image(seed: int, size=(48, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def test_detect_top_k_keeps_the_best_boxes(detector):
    image = random_image(0)
    every = Pipeline(detector, make_segmenter()).detect(image, PROMPT)
    assert len(every) > 3
    best = Pipeline(detector, make_segmenter(), top_k=3).detect(image, PROMPT)
    assert len(best) == 3
    assert best.masks is None
    assert best.image_size == (48, 64)
    np.testing.assert_array_equal(best.scores, np.sort(every.scores)[::-1][:3])
    assert (np.diff(best.scores) <= 0).all()
    h, w = best.image_size
    assert (best.xyxy >= 0).all() and (best.xyxy[:, [0, 2]] <= w).all()
    assert (best.xyxy[:, [1, 3]] <= h).all()


def test_segment_gives_masks_at_image_size(detector):
    image = random_image(1, size=(40, 70))
    pipe = Pipeline(detector, make_segmenter(), top_k=4)
    boxes = pipe.detect(image, PROMPT)
    out = pipe.segment(image, boxes)
    assert out.masks.shape == (4, 40, 70) and out.masks.dtype == bool
    assert out.mask_scores.shape == (4,) and out.mask_scores.dtype == np.float32
    np.testing.assert_array_equal(out.xyxy, boxes.xyxy)  # boxes kept unless refined
    assert out.phrases == boxes.phrases


def test_segment_rejects_an_image_of_another_size(detector):
    pipe = Pipeline(detector, make_segmenter(), top_k=2)
    boxes = pipe.detect(random_image(0), PROMPT)
    with pytest.raises(ValueError, match="pass the image they were"):
        pipe.segment(random_image(0, size=(30, 30)), boxes)


def test_min_mask_area_and_refined_boxes(detector):
    image = random_image(2)
    segmenter = make_segmenter()
    plain = Pipeline(detector, segmenter, top_k=8)
    raw = plain.segment(image, plain.detect(image, PROMPT))
    areas = mask_area(raw.masks)
    assert len(set(areas.tolist())) > 1, "need masks of different areas for this test"
    cut = int(np.median(areas)) + 1

    pipe = Pipeline(detector, segmenter, top_k=8, min_mask_area=cut, refine_boxes_from_masks=True)
    out = pipe.segment(image, pipe.detect(image, PROMPT))
    assert len(out) == int((areas >= cut).sum())
    assert (mask_area(out.masks) >= cut).all()
    np.testing.assert_array_equal(out.xyxy, masks_to_xyxy(out.masks))
    np.testing.assert_array_equal(out.masks, raw.masks[areas >= cut])


def test_options_are_checked(detector):
    with pytest.raises(ValueError, match="min_mask_area"):
        Pipeline(detector, make_segmenter(), min_mask_area=-1)
    with pytest.raises(ValueError, match="top_k"):
        Pipeline(detector, make_segmenter(), top_k=0)


def test_call_runs_every_step_with_one_encoder_pass_per_image(detector):
    segmenter = make_segmenter()
    calls = count_encoder_calls(segmenter)
    pipe = Pipeline(detector, segmenter, top_k=5)
    for i in range(2):
        out = pipe(random_image(10 + i), PROMPT)
        assert calls[0] == i + 1
        assert out.masks.shape == (len(out), 48, 64)
        assert out.class_id.dtype == np.int64
        assert ((out.class_id >= -1) & (out.class_id < len(CLASSES))).all()
    pipe(random_image(10), PROMPT)  # seen before: the embedding comes from the cache
    assert calls[0] == 2


def test_steps_one_by_one_equal_call(detector, tmp_path):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.fromarray(random_image(3)).save(path)
    segmenter = make_segmenter()
    calls = count_encoder_calls(segmenter)
    pipe = Pipeline(detector, segmenter, top_k=6, classes=CLASSES)

    boxes = pipe.detect(path, PROMPT)  # a path: each step loads the image itself
    masks = pipe.segment(path, boxes)
    stepped = pipe.label(masks, prompt=PROMPT)  # the prompt: the detector's classes are kept
    whole = pipe(path, PROMPT)
    assert calls[0] == 1
    assert json.dumps(stepped.to_dict()) == json.dumps(whole.to_dict())


def count_decodes(monkeypatch) -> list[int]:
    """Count calls of ``grounded_sam.image.load_image``; each still runs the real function."""
    import grounded_sam.image

    real = grounded_sam.image.load_image
    calls = [0]

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(grounded_sam.image, "load_image", counting)
    return calls


@pytest.mark.parametrize("kind", ["grounding-dino", "clip"])
def test_call_decodes_the_image_once(kind, tmp_path, monkeypatch, torch_threads):
    from PIL import Image

    path = tmp_path / "img.png"
    Image.fromarray(random_image(7)).save(path)
    pipe = Pipeline.tiny_random(CLASSES, kind, top_k=3)
    decodes = count_decodes(monkeypatch)
    out = pipe(path, PROMPT)
    assert decodes[0] == 1
    assert out.masks.shape[1:] == (48, 64)
    # an array that already is RGB uint8 (H, W, 3) is used as it is: nothing to decode
    pipe(random_image(8), PROMPT)
    assert decodes[0] == 1


def test_label_needs_classes(detector):
    pipe = Pipeline(detector, make_segmenter())
    with pytest.raises(gs.PromptError, match="classes"):
        pipe.label(gs.Detections.empty((4, 4)))


def test_label_maps_to_the_given_class_list(detector):
    pipe = Pipeline(detector, make_segmenter(), top_k=10)
    image = random_image(4)
    dets = pipe.segment(image, pipe.detect(image, PROMPT))
    out = pipe.label(dets, ["dog", "cat", "bird"])
    assert len(out) == len(dets)
    assert ((out.class_id >= -1) & (out.class_id < 3)).all()


def test_call_keeps_the_detectors_class_and_maps_other_lists_by_name(detector):
    pipe = Pipeline(detector, make_segmenter(), top_k=10)
    image = random_image(4)
    dets = pipe.segment(image, pipe.detect(image, PROMPT))
    np.testing.assert_array_equal(pipe(image, PROMPT).class_id, dets.class_id)
    # another list: each detector class is mapped by its name ("bird" is never detected)
    out = pipe(image, PROMPT, classes=["bird", "dog", "cat"])
    np.testing.assert_array_equal(out.class_id, np.array([2, 1, -1])[dets.class_id])


def test_clip_detector_shares_the_embedding(torch_threads):
    from grounded_sam.testing.clip import tiny_clip

    segmenter = make_segmenter()
    calls = count_encoder_calls(segmenter)
    model, preprocess, tokenizer = tiny_clip(seed=0)
    detector = gs.ClipMaskDetector(
        segmenter,
        model,
        preprocess,
        tokenizer,
        score_threshold=0.0,
        background_prompts=(),
        model_id="tiny-clip",
        amg_options={"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0},
    )
    pipe = Pipeline(detector, segmenter, top_k=3)
    out = pipe(random_image(5), PROMPT)
    assert calls[0] == 1  # automatic masks and box masks from one embedding
    assert out.masks is not None and out.masks.shape[1:] == (48, 64)
    assert ((out.class_id >= -1) & (out.class_id < 2)).all()


def test_config_describes_settings_and_is_json(detector):
    segmenter = make_segmenter()
    pipe = Pipeline(detector, segmenter, top_k=5)
    config = pipe.config()
    text = json.dumps(config, sort_keys=True)
    assert config["detector"]["type"] == "GroundingDinoDetector"
    assert config["detector"]["box_threshold"] == 0.0
    assert config["segmenter"]["params"] > 0
    assert config["top_k"] == 5
    assert json.dumps(Pipeline(detector, segmenter, top_k=5).config(), sort_keys=True) == text
    assert json.dumps(Pipeline(detector, segmenter, top_k=4).config(), sort_keys=True) != text


def test_from_registry_names_the_missing_file_and_the_download_command(tmp_path):
    with pytest.raises(gs.MissingCheckpointError) as err:
        Pipeline.from_registry(sam="vit_b", detector="grounding-dino-tiny", models_dir=tmp_path)
    assert str(tmp_path / "sam_vit_b_01ec64.pth") in str(err.value)
    assert "grounded-sam download sam_vit_b" in str(err.value)


def test_from_registry_knows_sam2_1(tmp_path):
    with pytest.raises(gs.MissingCheckpointError) as err:
        Pipeline.from_registry(sam="sam2.1_hiera_tiny", detector="clip", models_dir=tmp_path)
    assert str(tmp_path / "sam2.1_hiera_tiny.pt") in str(err.value)
    assert "grounded-sam download sam2.1_hiera_tiny" in str(err.value)


def test_tiny_random_pipeline_with_sam2():
    pytest.importorskip("sam2")
    pipe = Pipeline.tiny_random(["cat", "dog"], sam="sam2", top_k=3)
    assert type(pipe.segmenter).__name__ == "Sam2Segmenter"
    assert pipe.names["sam"] == "tiny-random-sam2-0"
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    dets = pipe(image, "cat . dog")
    assert dets.masks is not None and dets.masks.shape[1:] == (96, 128)
    assert pipe.config()["segmenter"]["mask_threshold"] == 0.0


def test_from_registry_checks_the_detector_files_before_loading(tmp_path):
    from grounded_sam.testing.sam import tiny_sam_checkpoint

    # a SAM file of the right name but the wrong size counts as missing (truncated download)
    tiny_sam_checkpoint(tmp_path / "sam_vit_b_01ec64.pth")
    with pytest.raises(gs.MissingCheckpointError, match="grounded-sam download sam_vit_b"):
        Pipeline.from_pretrained(sam="vit_b", detector="clip", models_dir=tmp_path)


def test_from_registry_rejects_a_model_of_the_wrong_kind(tmp_path):
    with pytest.raises(ValueError, match="not a sam model"):
        Pipeline.from_registry(sam="grounding-dino-tiny", models_dir=tmp_path)
    with pytest.raises(KeyError, match="unknown model"):
        Pipeline.from_registry(sam="vit_x", models_dir=tmp_path)


def test_config_follows_detector_thresholds(detector):
    pipe = Pipeline(detector, make_segmenter())
    before = json.dumps(pipe.config(), sort_keys=True)
    old = detector.box_threshold
    try:
        detector.box_threshold = 0.5
        changed = pipe.config()
    finally:
        detector.box_threshold = old
    assert changed["detector"]["box_threshold"] == 0.5
    assert json.dumps(changed, sort_keys=True) != before
    assert "stats" not in changed["segmenter"]  # counters change as it runs; not settings


@pytest.mark.cpu_kind
@pytest.mark.parametrize("kind", ["grounding-dino", "clip"])
def test_fast_reaches_the_optimised_modules_and_exact_stays_the_default(kind, torch_threads):
    from grounded_sam.detectors.fast_grounding_dino import is_optimized as detector_optimized
    from grounded_sam.segmenters.fast_sam import is_optimized as sam_optimized

    image = random_image(7, size=(60, 80))
    exact = Pipeline.tiny_random(CLASSES, kind)
    fast = Pipeline.tiny_random(CLASSES, kind, fast=True)
    for pipe in (exact, fast):
        out = pipe(image, PROMPT)
        assert out.masks is not None and out.masks.shape[1:] == (60, 80)

    assert not exact.segmenter.fast and not exact.segmenter.fast_decoder
    assert not sam_optimized(exact.segmenter.sam)
    assert fast.segmenter.fast and fast.segmenter.fast_decoder
    assert sam_optimized(fast.segmenter.sam)  # the encoder was swapped on the first embed
    if kind == "grounding-dino":
        assert not exact.detector.fast and not detector_optimized(exact.detector.model)
        assert fast.detector.fast and detector_optimized(fast.detector.model)

    # the fingerprint of a resumable run tells the two apart
    assert "fast_compute_dtype" not in exact.config()
    assert fast.config()["segmenter"]["fast"] is True
    assert json.dumps(fast.config(), sort_keys=True) != json.dumps(exact.config(), sort_keys=True)


@pytest.mark.cpu_kind
def test_fast_compute_dtype_follows_force_fp32(monkeypatch, detector):
    from grounded_sam.runtime import resolve_compute_dtype
    from grounded_sam.testing.sam import tiny_sam

    pipe = Pipeline(detector, gs.SamSegmenter(tiny_sam(seed=0, global_attn_indexes=()), fast=True))
    monkeypatch.delenv("GROUNDED_SAM_FORCE_FP32", raising=False)
    assert pipe.config()["fast_compute_dtype"] == str(resolve_compute_dtype(None, "cpu"))
    monkeypatch.setenv("GROUNDED_SAM_FORCE_FP32", "1")
    assert pipe.config()["fast_compute_dtype"] == "torch.float32"
