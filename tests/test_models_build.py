"""The model factory (grounded_sam.models.build): names to entries, files to components, tiny
random models, and nobody else building models."""

from __future__ import annotations

from pathlib import Path

import pytest

import grounded_sam as gs
from grounded_sam.models import build

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "name, kind, expected",
    [
        ("vit_b", "sam", "sam_vit_b"),
        ("sam_vit_h", "sam", "sam_vit_h"),
        ("sam2.1_hiera_tiny", "sam", "sam2.1_hiera_tiny"),
        ("grounding-dino-tiny", "detector", "grounding_dino_tiny"),
        ("clip", "detector", "clip_vit_b32"),
        ("CLIP_VIT_B32", "detector", "clip_vit_b32"),
    ],
)
def test_entry_reads_the_names_users_write(name, kind, expected):
    assert build.entry(name, kind).name == expected


def test_entry_refuses_a_model_of_the_other_kind_and_lists_unknown_names():
    with pytest.raises(ValueError, match="not a sam model"):
        build.entry("grounding-dino-tiny", "sam")
    with pytest.raises(ValueError, match="not a grounding_dino or clip model"):
        build.entry("sam_vit_b", "detector")
    with pytest.raises(KeyError, match="known models"):
        build.entry("vit_q", "sam")


def test_missing_files_name_the_file_and_the_download_command(tmp_path):
    with pytest.raises(gs.MissingCheckpointError) as err:
        build.segmenter("vit_h", models_dir=tmp_path)
    assert str(tmp_path / "sam_vit_h_4b8939.pth") in str(err.value)
    assert "grounded-sam download sam_vit_h" in str(err.value)
    with pytest.raises(gs.MissingCheckpointError, match="grounded-sam download clip_vit_b32"):
        build.detector("clip", segmenter=object(), models_dir=tmp_path)


def test_a_grounding_dino_folder_on_disk_builds_with_precision_and_options(tmp_path):
    from grounded_sam.testing.grounding_dino import save_tiny_grounding_dino

    folder = tmp_path / "gd"
    save_tiny_grounding_dino(folder, words=["cat"])
    det = build.detector(str(folder), device="cpu", precision="fast-fp32", box_threshold=0.2)
    assert isinstance(det, gs.GroundingDinoDetector)
    assert det.fast and det.fast_dtype == "fp32" and det.box_threshold == 0.2
    exact = build.detector(str(folder), device="cpu")
    assert not exact.fast and exact.precision.name == "exact"


def test_tiny_components_share_precision_and_say_which_seed_built_them():
    det, seg, names = build.tiny_components(["cat", "traffic light"], seed=3, precision="fast")
    assert isinstance(det, gs.GroundingDinoDetector) and isinstance(seg, gs.SamSegmenter)
    assert det.fast and seg.fast
    assert names == {"sam": "tiny-random-3", "detector": "tiny-random-grounding-dino-3"}
    assert "traffic" in det.processor.tokenizer.get_vocab()  # the classes' words are known
    clip, clip_seg, _ = build.tiny_components(["cat"], "clip", precision="fast")
    assert isinstance(clip, gs.ClipMaskDetector) and clip.segmenter is clip_seg
    assert clip.score_threshold == 0.0 and clip.background_prompts == ()


def test_a_clip_detector_needs_the_segmenter_it_scores():
    with pytest.raises(ValueError, match="segmenter="):
        build.tiny_detector("clip")
    with pytest.raises(ValueError, match="'grounding-dino' or 'clip'"):
        build.tiny_detector("yolo")


def test_split_kwargs_separates_the_factory_keywords_from_the_pipeline_options():
    mine, rest = build.split_kwargs(
        build.components, {"device": "cpu", "precision": "fast", "top_k": 5, "synonyms": {}}
    )
    assert mine == {"device": "cpu", "precision": "fast"}
    assert rest == {"top_k": 5, "synonyms": {}}


def test_pipeline_constructors_pass_pipeline_options_through():
    pipe = gs.Pipeline.tiny_random(["cat"], precision="fast", top_k=2, min_mask_area=3)
    assert pipe.top_k == 2 and pipe.min_mask_area == 3 and pipe.classes == ["cat"]
    assert pipe.segmenter.fast and pipe.detector.fast


def test_one_list_of_sam_model_types():
    from grounded_sam.cli.label import SAM_TYPES
    from grounded_sam.models import registry
    from grounded_sam.segmenters.sam_loading import SAM_MODEL_TYPES
    from grounded_sam.service.models import ModelManager

    assert SAM_MODEL_TYPES is registry.SAM_MODEL_TYPES == ("vit_b", "vit_l", "vit_h")
    assert SAM_TYPES is registry.SAM_CHOICES
    assert ModelManager(models_dir="/nonexistent").sam_names == list(registry.SAM_MODEL_TYPES)


# What builds a model; only the factory (models/build.py, segmenters/factory.py) and the
# components' own classmethods may call these.
_BUILDING = (
    "from_checkpoint(",
    "from_pretrained(",
    "from_original(",
    "GroundingDinoDetector(",
    "ClipMaskDetector(",
    "SamSegmenter(",
    "Sam2Segmenter(",
    "tiny_grounding_dino(",
    "tiny_clip(",
    "tiny_sam(",
    "tiny_sam2(",
    "build_segmenter(",
    "load_clip(",
)


@pytest.mark.parametrize(
    "path",
    [
        "grounded_sam/pipeline.py",
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "grounded_sam/service").glob("*.py")),
        *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "grounded_sam/cli").glob("*.py")),
        "app.py",
    ],
)
def test_no_model_is_built_outside_the_factory(path):
    text = (ROOT / path).read_text(encoding="utf-8")
    assert [b for b in _BUILDING if b in text] == []
