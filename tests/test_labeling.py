"""The label step: phrase -> class mapping and review triage."""

from __future__ import annotations

import numpy as np
import pytest

from grounded_sam.errors import PromptError
from grounded_sam.labeling import ClassMatcher, label, match_key, singular
from grounded_sam.types import Detections

CLASSES = ["cat", "dog", "traffic light", "glass", "box", "strawberry", "person"]


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("cats", "cat"),
        ("boxes", "box"),
        ("berries", "berry"),
        ("buses", "bus"),
        ("bus", "bus"),
        ("glass", "glass"),
        ("glasses", "glass"),
        ("dishes", "dish"),
        ("watches", "watch"),
        ("analysis", "analysis"),
        ("gas", "gas"),
        ("dog", "dog"),
    ],
)
def test_singular(word, expected):
    assert singular(word) == expected


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("cat", "cat"),
        ("  Cats ", "cat"),
        ("CAT.", "cat"),
        ("traffic   lights", "traffic light"),
        ("traffic_light", "traffic light"),
        ("black cat", "cat"),  # contains one class
        ("a red traffic light", "traffic light"),
        ("traffic", "traffic light"),  # part of one class (DINO text threshold)
        ("glasses", "glass"),
        ("boxes", "box"),
        ("strawberries", "strawberry"),
        ("cat dog", ""),  # two classes: ambiguous
        ("##hy", ""),  # a word piece
        ("", ""),
        ("car", ""),
        ("man", "person"),  # synonym
        ("a woman walking", "person"),  # synonym inside the phrase
    ],
)
def test_phrase_to_class(phrase, expected):
    matcher = ClassMatcher(CLASSES, synonyms={"person": ["man", "woman"]})
    cid = matcher(phrase)
    assert (matcher.classes[cid] if cid >= 0 else "") == expected


def test_longest_name_wins_and_duplicates_map_to_first():
    m = ClassMatcher(["light", "traffic light", "light"])
    assert m("traffic light") == 1
    assert m("red traffic light") == 1  # "traffic light" is longer than "light"
    assert m("light") == 0  # a repeated class maps to its first position
    assert match_key("Traffic-Lights!") == ("traffic", "light")


def make(phrases, scores, mask_scores=None) -> Detections:
    n = len(phrases)
    return Detections(
        xyxy=np.tile(np.array([0, 0, 4, 4], np.float32), (n, 1)),
        scores=scores,
        phrases=phrases,
        class_id=np.full(n, -1),
        mask_scores=mask_scores,
        image_size=(8, 8),
        data={"stability_score": np.arange(n, dtype=np.float32)},
    )


def test_label_sets_class_and_review_flags():
    d = make(
        ["cat", "dogs", "unicorn", "traffic light", "cat"],
        [0.9, 0.3, 0.95, 0.8, 0.6],
        mask_scores=[0.95, 0.9, 0.9, 0.5, 0.85],
    )
    out = label(d, "cat . dog . traffic light", box_threshold_accept=0.5, mask_threshold_accept=0.8)
    assert out.class_id.dtype == np.int64
    assert out.class_id.tolist() == [0, 1, -1, 2, 0]
    assert out.data["class_name"] == ["cat", "dog", "", "traffic light", "cat"]
    assert out.data["needs_review"].dtype == bool
    assert out.data["needs_review"].tolist() == [False, True, True, True, False]
    assert out.data["review_reason"] == ["", "low score", "no class", "low mask score", ""]
    np.testing.assert_array_equal(out.data["stability_score"], d.data["stability_score"])
    assert out.phrases == d.phrases and out is not d

    # thresholds move the triage; no mask scores: only score and class count
    loose = label(
        d.replace(mask_scores=None), ["cat", "dog", "traffic light"], box_threshold_accept=0.2
    )
    assert loose.data["needs_review"].tolist() == [False, False, True, False, False]
    strict = label(d, ["cat", "dog", "traffic light"], box_threshold_accept=0.99)
    assert strict.data["needs_review"].all()
    assert strict.data["review_reason"][2] == "low score; no class"


def test_label_slices_and_empty():
    out = label(make(["cat", "dog"], [0.9, 0.9]), ["dog", "cat"])
    assert out.class_id.tolist() == [1, 0]
    assert out[0].data["class_name"] == ["cat"]
    empty = label(Detections.empty((4, 4)), ["cat"])
    assert len(empty) == 0 and empty.data["needs_review"].shape == (0,)


def test_bad_arguments():
    d = make(["cat"], [0.9])
    with pytest.raises(PromptError):
        label(d, "")
    with pytest.raises(ValueError, match="not one of the classes"):
        label(d, ["cat"], synonyms={"horse": ["pony"]})
    with pytest.raises(ValueError, match="one class"):
        label(d, ["cat", "dog"], synonyms={"cat": ["pet"], "dog": ["pet"]})
    with pytest.raises(ValueError, match="box_threshold_accept"):
        label(d, ["cat"], box_threshold_accept=1.5)
    # a single alias given as a string works
    assert label(make(["kitty"], [0.9]), ["cat"], synonyms={"cat": "kitty"}).class_id[0] == 0


# ---------------------------------------------------------------------------- class identity


def with_ids(phrases, class_id) -> Detections:
    return make(phrases, [0.9] * len(phrases)).replace(class_id=class_id)


def test_the_prompts_classes_keep_the_detectors_class_id():
    """Phrase "traffic" is part of both classes: matching its text would give no class."""
    d = with_ids(["traffic", "traffic"], [0, 1])
    classes = ["traffic light", "traffic cone"]
    out = label(d, classes, prompt_classes=classes)
    assert out.class_id.tolist() == [0, 1]
    assert out.data["class_name"] == ["traffic light", "traffic cone"]
    assert not out.data["needs_review"].any()
    # the same prompt written another way is the same class list
    assert label(d, classes, prompt_classes="Traffic light . traffic cone").class_id.tolist() == [
        0,
        1,
    ]
    # without the prompt only the text is known, and "traffic" is ambiguous
    assert label(d, classes).class_id.tolist() == [-1, -1]


def test_another_class_list_maps_the_detectors_class_by_name():
    prompt = ["traffic light", "traffic cone", "kitten", "car"]
    d = with_ids(["traffic", "traffic", "cat", "car", "kitten"], [0, 1, 2, 3, -1])
    out = label(
        d, ["cone", "cat", "traffic light"], prompt_classes=prompt, synonyms={"cat": "kitten"}
    )
    # by name: light -> 2, cone -> "traffic cone" contains "cone" -> 0, kitten -> cat (synonym),
    # car is not a label class; a detection of class -1 falls back to its phrase
    assert out.class_id.tolist() == [2, 0, 1, -1, 1]
    assert out.data["review_reason"][3] == "no class"


def test_a_class_id_outside_the_prompt_is_an_error():
    with pytest.raises(ValueError, match="out of range for the prompt's 1 classes"):
        label(with_ids(["cat"], [1]), ["cat"], prompt_classes=["cat"])


def test_a_grounding_dino_run_keeps_its_class_when_the_phrase_disagrees(tmp_path):
    """A tiny random Grounding DINO: with text_threshold=1 a phrase is only its best word, so
    some phrases are "traffic", which names neither class alone."""
    from grounded_sam.detectors.grounding_dino import GroundingDinoDetector
    from grounded_sam.testing.grounding_dino import tiny_grounding_dino

    model, processor = tiny_grounding_dino(tmp_path, seed=0, words=["cone"])
    det = GroundingDinoDetector(model, processor, box_threshold=0.0, text_threshold=1.0)
    prompt = "traffic light . traffic cone"
    image = np.random.default_rng(0).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    dets = det.detect(image, prompt)
    matcher = ClassMatcher(prompt)
    by_phrase = np.array([matcher(p) for p in dets.phrases])
    disagree = (dets.class_id >= 0) & (by_phrase != dets.class_id)
    assert disagree.any(), "the seed no longer gives a phrase that disagrees; pick another"
    assert {dets.phrases[i] for i in np.flatnonzero(disagree)} == {"traffic"}

    out = label(dets, prompt, prompt_classes=prompt)
    np.testing.assert_array_equal(out.class_id, dets.class_id)
    names = ["traffic light", "traffic cone"]
    assert out.data["class_name"] == [names[c] if c >= 0 else "" for c in dets.class_id]
