"""A refusal (bad input, raised by our checks) is told apart from a bug (raised elsewhere)."""

from __future__ import annotations

import numpy as np

from grounded_sam.errors import PromptError
from grounded_sam.service.options import number
from grounded_sam.service.refusals import is_refusal, one_line


def raised(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        return e
    raise AssertionError("no exception")


def test_our_checks_are_refusals():
    assert is_refusal(PromptError("no class"))  # project errors, wherever raised
    assert is_refusal(raised(lambda: number("t", "x")))  # a ValueError from grounded_sam


def test_errors_from_other_libraries_are_bugs():
    assert not is_refusal(raised(lambda: np.zeros(2) + np.zeros(3)))
    assert not is_refusal(raised(lambda: {}["missing"]))


def test_own_files_count_as_ours():
    def local_check():
        raise ValueError("bad detector")

    err = raised(local_check)
    assert not is_refusal(err)
    assert is_refusal(err, own_files=[__file__])


def test_one_line():
    assert one_line(ValueError("a\n  b\tc")) == "a b c"
    assert one_line(KeyError()) == "KeyError"
