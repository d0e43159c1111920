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
