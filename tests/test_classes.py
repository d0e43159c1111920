"""The one class-list rule: lower case, whitespace collapsed, each name once, order kept."""

from __future__ import annotations

import pytest

from grounded_sam.classes import parse_classes
from grounded_sam.errors import PromptError


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("cat . dog", ["cat", "dog"]),
        ("Cat. DOG.", ["cat", "dog"]),
        ("  traffic   light .", ["traffic light"]),
        ("cat . . dog .", ["cat", "dog"]),
        (["Cat", " dog "], ["cat", "dog"]),
        (["cat.", ". dog"], ["cat", "dog"]),
        (("traffic\tlight",), ["traffic light"]),
        # a repeated name is kept once, at its first position (case does not make it new)
        (["cat", "dog", "cat"], ["cat", "dog"]),
        ("Cat . dog . cat", ["cat", "dog"]),
        (" Traffic   light .cat. cat .", ["traffic light", "cat"]),
    ],
)
def test_parse_classes(prompt, expected):
    assert parse_classes(prompt) == expected


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("", "empty prompt"),
        ("  .  . ", "names no class"),
        ([], "empty prompt"),
        (["cat", "  "], "class 1"),
        (["st. bernard"], "separator"),
        ("is it a cat?", "'?'"),
        (["cat", 3], "class 1 of the prompt is int"),
        (None, "prompt must be a string"),
    ],
)
def test_bad_prompts_are_rejected(prompt, message):
    with pytest.raises(PromptError, match=message):
        parse_classes(prompt)


def test_every_step_uses_the_one_rule():
    """The detectors' prompt, the label step and the pipeline index the same list."""
    from grounded_sam.detectors.phrases import Prompt
    from grounded_sam.labeling import ClassMatcher
    from grounded_sam.pipeline import Pipeline

    prompt = "Cat . dog . cat"
    assert list(Prompt.from_classes(prompt).classes) == parse_classes(prompt)
    assert ClassMatcher(prompt).classes == parse_classes(prompt)
    assert Pipeline(None, None, classes=prompt).classes == parse_classes(prompt)
