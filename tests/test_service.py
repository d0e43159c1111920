"""The demo's service layer with the tiny random models: lazy shared models, per-request
thresholds that never touch the shared detector, click state, JSON, table and downloads."""

from __future__ import annotations

import json
import threading
import zipfile

import numpy as np
import pytest

from grounded_sam import service
from grounded_sam.errors import MissingCheckpointError
from grounded_sam.export.png import detections_from_png, instance_map
from grounded_sam.masks import rle_to_mask
from grounded_sam.types import Detections

H, W = 96, 128


@pytest.fixture(scope="module")
def manager():
    m = service.ModelManager(tiny_random=True, device="cpu")
    yield m
    m.close()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = np.full((H, W, 3), 40, np.uint8)
    img[20:60, 30:90] = (200, 60, 60)
    return np.clip(img + rng.integers(0, 20, img.shape), 0, 255).astype(np.uint8)


def test_models_are_built_once_and_shared_between_threads(manager):
    assert manager.loaded() == []
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(manager.segmenter())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(g) for g in got}) == 1
    assert manager.loaded() == ["sam:tiny-random"]


def test_request_thresholds_do_not_change_the_shared_detector(manager):
    shared = manager.grounding_dino()
    before = (shared.box_threshold, shared.text_threshold)
    mine = manager.detector("grounding_dino", box_threshold=0.01, text_threshold=None)
    assert mine is not shared and mine.model is shared.model
    assert mine.box_threshold == 0.01 and mine.text_threshold == before[1]
    assert (shared.box_threshold, shared.text_threshold) == before
    with pytest.raises(ValueError, match="no option"):
        manager.detector("grounding_dino", bogus=1)
    with pytest.raises(ValueError, match="unknown detector"):
        manager.detector("yolo")
    with pytest.raises(ValueError, match="unknown SAM"):
        manager.segmenter("vit_q")


def test_detect_segment_labels_the_prompt_classes(manager, image):
    dets, classes = service.detect_segment(
        manager, image, "ball . box", box_threshold=0.0, text_threshold=0.0
    )
    assert classes == ["ball", "box"]
    assert len(dets) > 0 and dets.masks.shape == (len(dets), H, W)
    assert set(dets.class_id.tolist()) <= {-1, 0, 1}
    assert "needs_review" in dets.data
    rows = service.table_rows(dets)
    assert len(rows) == len(dets) and all(len(r) == len(service.TABLE_HEADERS) for r in rows)
    # review column: the label step's reason exactly where it flagged the detection
    flagged = np.asarray(dets.data["needs_review"], bool)
    assert [bool(r[3]) for r in rows] == flagged.tolist()


def test_clip_detector_uses_the_same_sam(manager, image):
    dets, _ = service.detect_segment(manager, image, "ball", detector="clip", clip_threshold=0.0)
    assert len(dets) > 0 and dets.masks.shape[1:] == (H, W)
    assert manager.clip_detector().segmenter is manager.segmenter()


def test_segment_points_and_refinement(manager, image):
    dets, logits = service.segment_points(manager, image, [[60, 40]], [1])
    assert len(dets) == 1 and dets.masks.shape == (1, H, W)
    assert logits.shape == (1, 256, 256) and logits.dtype == np.float32
    again, _ = service.segment_points(
        manager, image, [[60, 40], [10, 10]], [1, 0], box=[20, 10, 100, 70], mask_input=logits
    )
    assert again.masks.shape == (1, H, W)
    with pytest.raises(ValueError, match="one label per point"):
        service.segment_points(manager, image, [[1, 2]], [1, 0])


def test_everything_has_unlabelled_masks(manager, image):
    dets = service.everything(manager, image, points_per_side=4)
    assert len(dets) >= 1 and (dets.class_id == -1).all()
    assert dets.masks.shape[1:] == (H, W)


def test_result_json_round_trips(manager, image):
    dets, classes = service.detect_segment(
        manager, image, "ball", box_threshold=0.0, text_threshold=0.0
    )
    out = json.loads(json.dumps(service.result_json(dets, classes, random_weights=True)))
    assert out["image_size"] == [H, W] and out["classes"] == ["ball"] and out["random_weights"]
    for item in out["detections"]:
        assert rle_to_mask(item["mask"]).shape == (H, W)
    back = Detections.from_dict(out)
    np.testing.assert_array_equal(back.masks, dets.masks)


def test_click_state_points_and_box():
    s = service.ClickState()
    assert not s.ready
    s = s.click(10, 20, "foreground").click(30, 5, "background")
    assert s.points == ((10.0, 20.0), (30.0, 5.0)) and s.labels == (1, 0)
    s = s.click(50, 60, "box")
    assert s.corner == (50.0, 60.0) and s.box is None
    s = s.click(40, 70, "box")
    assert s.box == (40.0, 60.0, 50.0, 70.0) and s.corner is None and s.ready
    logits = np.zeros((1, 256, 256), np.float32)
    assert s.with_logits(logits).logits is logits and s.logits is None  # a new value
    with pytest.raises(ValueError, match="click mode"):
        s.click(1, 1, "lasso")


def test_export_result_writes_coco_and_png(tmp_path, manager, image):
    pycocotools_mask = pytest.importorskip("pycocotools.mask")
    dets = service.everything(manager, image, points_per_side=4)
    coco_path, zip_path = service.export_result(dets, [], tmp_path, file_name="x.png")
    assert coco_path.name == "annotations.coco.json" and zip_path.name == "masks.zip"
    coco = json.loads(coco_path.read_text())
    assert [c["name"] for c in coco["categories"]][0] == "object"
    assert coco["images"][0]["height"] == H and coco["images"][0]["width"] == W
    for ann in coco["annotations"]:
        assert pycocotools_mask.decode(ann["segmentation"]).shape == (H, W)
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == ["masks/x.json", "masks/x.png"]
        zf.extractall(tmp_path / "unzipped")
    back = detections_from_png(tmp_path / "unzipped" / "masks" / "x.png")
    np.testing.assert_array_equal(
        back.masks, instance_map(dets)[None] == np.arange(1, len(dets) + 1)[:, None, None]
    )


def test_missing_checkpoints_are_named_with_the_download_command(tmp_path):
    m = service.ModelManager(models_dir=tmp_path, device="cpu", sam_names=["vit_b"])
    status = {s.name: s for s in m.status()}
    assert set(status) == {"sam_vit_b", "grounding_dino_tiny", "clip_vit_b32"}
    assert not any(s.present for s in status.values())
    assert status["sam_vit_b"].command == "grounded-sam download sam_vit_b"
    banner = service.status_markdown(m)
    assert "grounded-sam download grounding_dino_tiny" in banner
    assert "nothing on this page can run" in banner and "rest of the page" not in banner
    with pytest.raises(MissingCheckpointError, match="grounded-sam download sam_vit_b"):
        m.segmenter("vit_b")
    assert m.loaded() == []
    tiny = service.ModelManager(tiny_random=True)
    assert "Random weights" in service.status_markdown(tiny)


def test_check_amg_options():
    limits = service.Limits(max_points_per_side=16)
    assert service.check_amg_options({"points_per_side": 8.0}, limits) == {"points_per_side": 8}
    assert service.check_amg_options(None, limits) == {}
    with pytest.raises(ValueError, match="bogus"):
        service.check_amg_options({"bogus": 1}, limits)
    with pytest.raises(service.LimitExceeded, match="limit of 16.*MAX_POINTS_PER_SIDE"):
        service.check_amg_options({"points_per_side": 17}, limits)


def test_request_thresholds_are_checked_before_any_model_runs(manager, image):
    for bad in (5, -0.1, float("nan"), float("inf"), "0.3", True):
        with pytest.raises(ValueError, match="box_threshold"):
            service.detect_segment(manager, image, "ball", box_threshold=bad)
    with pytest.raises(ValueError, match="score_threshold"):
        service.detect_segment(manager, image, "ball", detector="clip", clip_threshold=2)


def test_detections_per_request_are_bounded(manager, image):
    limits = service.Limits(max_boxes=3)
    dets, _ = service.detect_segment(
        manager, image, "ball . box", box_threshold=0, text_threshold=0, limits=limits
    )
    assert 1 <= len(dets) <= 3


@pytest.mark.cpu_kind
def test_fast_manager_serves_requests_through_the_optimised_models(image):
    from grounded_sam.detectors.fast_grounding_dino import is_optimized as detector_optimized
    from grounded_sam.segmenters.fast_sam import is_optimized as sam_optimized

    assert service.ModelManager(tiny_random=True).fast is False  # exact by default
    fast = service.ModelManager(tiny_random=True, device="cpu", fast=True)
    try:
        dets, _ = service.detect_segment(
            fast, image, "ball . box", box_threshold=0.0, text_threshold=0.0
        )
        assert len(dets) > 0 and dets.masks.shape == (len(dets), H, W)
        segmenter, detector = fast.segmenter(), fast.grounding_dino()
        assert segmenter.fast and segmenter.fast_decoder and sam_optimized(segmenter.sam)
        assert detector.fast and detector_optimized(detector.model)
        # a request's detector is a copy with its thresholds: it keeps the fast path
        assert fast.detector("grounding_dino", box_threshold=0.2).fast
    finally:
        fast.close()


def test_exact_manager_leaves_the_models_unoptimised(manager, image):
    from grounded_sam.detectors.fast_grounding_dino import is_optimized as detector_optimized
    from grounded_sam.segmenters.fast_sam import is_optimized as sam_optimized

    service.detect_segment(manager, image, "ball", box_threshold=0.0, text_threshold=0.0)
    assert not manager.segmenter().fast and not sam_optimized(manager.segmenter().sam)
    assert not manager.grounding_dino().fast
    assert not detector_optimized(manager.grounding_dino().model)
