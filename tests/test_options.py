"""Declared options: one check for the constructor, per-call overrides, assignments and the
web service's request options; each component's config() as the resume fingerprint."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import grounded_sam as gs
from grounded_sam.autolabel.state import fingerprint
from grounded_sam.detectors.options import ClipOptions, GroundingDinoOptions
from grounded_sam.options import OptionTypeError

CLASSES = ["cat", "dog"]


@pytest.fixture(scope="module")
def pipe():
    return gs.Pipeline.tiny_random(CLASSES, top_k=3)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "option, bad, error",
    [
        ("box_threshold", 5, ValueError),
        ("box_threshold", -0.1, ValueError),
        ("box_threshold", math.nan, ValueError),
        ("box_threshold", "0.3", TypeError),
        ("text_threshold", True, TypeError),
        ("nms", "soft", ValueError),
        ("nms_iou", 1.5, ValueError),
        ("top_k", 0, ValueError),
        ("top_k", 2.5, ValueError),
    ],
)
def test_grounding_dino_options_name_the_bad_value(option, bad, error):
    with pytest.raises(error, match=option):
        GroundingDinoOptions(**{option: bad})
    with pytest.raises(error, match=option):
        GroundingDinoOptions().replace(**{option: bad})


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"templates": ("no placeholder",)}, "templates"),
        ({"templates": ()}, "templates"),
        ({"score_threshold": 2}, "score_threshold"),
        ({"batch_size": 0}, "batch_size"),
        ({"amg_options": {"points_per_side": 0}}, "points_per_side"),
        ({"amg_options": {"bogus": 1}}, "automatic-mask option"),
    ],
)
def test_clip_options_name_the_bad_value(changes, match):
    with pytest.raises((ValueError, TypeError), match=match):
        ClipOptions(**changes)


def test_a_wrong_type_is_a_type_error_and_a_value_error():
    with pytest.raises(OptionTypeError) as err:
        GroundingDinoOptions(box_threshold="high")
    assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)


def test_options_are_frozen_and_canonical():
    options = GroundingDinoOptions(box_threshold=1, top_k=2.0)
    assert options.box_threshold == 1.0 and isinstance(options.box_threshold, float)
    assert options.top_k == 2 and isinstance(options.top_k, int)
    with pytest.raises(AttributeError):
        options.box_threshold = 0.5  # type: ignore[misc]
    with pytest.raises(ValueError, match=r"no option\(s\) \['bogus'\]"):
        options.replace(bogus=1)


def test_with_options_shares_the_model_and_leaves_the_detector_alone(pipe):
    det = pipe.detector
    mine = det.with_options(box_threshold=0.05, top_k=1)
    assert mine is not det and mine.model is det.model and mine.processor is det.processor
    assert (mine.box_threshold, mine.top_k) == (0.05, 1)
    assert (det.box_threshold, det.top_k) == (0.35, None)
    assert det.with_options() is det
    with pytest.raises(ValueError, match="box_threshold"):
        det.with_options(box_threshold=5)


def test_assignment_goes_through_the_same_check(pipe):
    det = pipe.detector.with_options(box_threshold=0.35)  # a copy: the fixture stays as is
    det.box_threshold = 0.5
    assert det.options.box_threshold == 0.5 and pipe.detector.box_threshold == 0.35
    with pytest.raises(ValueError, match="box_threshold"):
        det.box_threshold = 5
    assert det.box_threshold == 0.5


def test_pipeline_detect_overrides_for_one_call(pipe, image):
    everything = pipe.detect(image, "cat . dog", box_threshold=0.0)
    assert len(everything) == 3  # top_k of the pipeline still applies
    assert pipe.detector.box_threshold == 0.35
    none = pipe.detect(image, "cat . dog", box_threshold=1.0)
    assert len(none) == 0
    with pytest.raises(ValueError, match="box_threshold"):
        pipe.detect(image, "cat . dog", box_threshold=5)
    with pytest.raises(ValueError, match="no option"):
        pipe.detect(image, "cat . dog", score_threshold=0.5)


def test_the_web_service_refuses_bad_request_options_with_the_constructor_check(image):
    from grounded_sam import service

    manager = service.ModelManager(tiny_random=True, device="cpu")
    try:
        with pytest.raises(ValueError, match=r"box_threshold must be in \[0, 1\], got 5"):
            manager.detector("grounding_dino", box_threshold=5)
        with pytest.raises(ValueError, match="box_threshold must be a number"):
            service.detect_segment(manager, image, "cat", box_threshold="5")
        with pytest.raises(ValueError, match="score_threshold"):
            manager.detector("clip", score_threshold=-1)
        shared = manager.grounding_dino()
        mine = manager.detector("grounding_dino", box_threshold=0.1, text_threshold=None)
        assert mine.model is shared.model and shared.box_threshold == 0.35
    finally:
        manager.close()


# Fingerprints of tiny random pipelines' config() made by the code before config() existed
# (commit bb37d43, settings found by reflection): output folders labelled then still resume.
FINGERPRINTS_BEFORE = {
    "grounding-dino": "bd374eb7e897ef584ad2b7b53ebb03456effbe86",
    "clip": "3d7daa216df49969ee6f37076c0ed0966e253389",
}


@pytest.mark.parametrize("kind", sorted(FINGERPRINTS_BEFORE))
def test_config_fingerprint_is_the_one_before_the_redesign(kind):
    pipe = gs.Pipeline.tiny_random(CLASSES, kind, top_k=3)
    assert fingerprint(pipe.config()) == FINGERPRINTS_BEFORE[kind]


def test_sam2_config_fingerprint_is_the_one_before_the_redesign():
    pytest.importorskip("sam2")
    pipe = gs.Pipeline.tiny_random(CLASSES, sam="sam2")
    assert fingerprint(pipe.config()) == "dfebfbb596fb5cabed65a38350ad2a6c1ba836ad"


def test_component_configs_are_plain_json_and_follow_the_options(pipe):
    for component in (pipe.detector, pipe.segmenter):
        config = component.config()
        assert json.loads(json.dumps(config)) == config
        assert "stats" not in config and config["params"] > 0
    changed = pipe.detector.with_options(nms="class").config()
    assert changed["nms"] == "class" and pipe.detector.config()["nms"] is None
