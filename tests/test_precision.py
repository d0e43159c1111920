"""One precision setting: the names, what each runs, and the old keywords mapped onto it."""

from __future__ import annotations

import argparse
import warnings

import pytest

import grounded_sam as gs
from grounded_sam.precision import PRECISIONS, Precision, from_legacy, parse_precision
from grounded_sam.testing.sam import tiny_sam


@pytest.mark.parametrize(
    "name, fast, dtype",
    [
        ("exact", False, None),
        ("fast", True, None),
        ("fast-fp32", True, "fp32"),
        ("fast-bf16", True, "bf16"),
        ("fast-fp16", True, "fp16"),
        ("autocast-bf16", False, "bf16"),
        ("autocast-fp16", False, "fp16"),
        (None, False, None),
        ("FAST_BF16", True, "bf16"),
    ],
)
def test_names(name, fast, dtype):
    p = parse_precision(name)
    assert (p.fast, p.dtype) == (fast, dtype)
    assert p.name in PRECISIONS and parse_precision(p.name) == p


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="exact, fast, fast-fp32"):
        parse_precision("quick")


def _sam(**kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seg = gs.SamSegmenter(tiny_sam(seed=0, global_attn_indexes=()), **kw)
    return seg, [w for w in caught if issubclass(w.category, DeprecationWarning)]


def _settings(seg):
    return (
        seg.fast,
        seg.fast_decoder,
        seg.dtype,
        seg._dtype_requested,
        seg._decoder_dtype_setting,
        seg.config(),
    )


@pytest.mark.parametrize(
    "legacy, name",
    [
        ({"fast": False}, "exact"),
        ({"fast": True}, "fast"),
        ({"fast": True, "dtype": "bf16"}, "fast-bf16"),
        ({"fast": True, "dtype": "fp32"}, "fast-fp32"),
        ({"dtype": "bf16"}, "autocast-bf16"),
    ],
)
def test_old_segmenter_keywords_warn_and_mean_a_precision(legacy, name):
    old, caught = _sam(**legacy)
    assert len(caught) == 1 and f"precision={name!r}" in str(caught[0].message)
    new, none = _sam(precision=name)
    assert none == []
    assert _settings(old) == _settings(new)
    assert old.precision.name == name


def test_decoder_only_keywords_still_work():
    seg, caught = _sam(fast_decoder=True, decoder_dtype="fp32")
    assert len(caught) == 1 and seg.fast_decoder and not seg.fast
    assert seg._decoder_dtype_setting == "fp32"
    assert "no precision name" in str(caught[0].message)


def test_precision_and_an_old_keyword_together_are_refused():
    with pytest.raises(ValueError, match="precision= alone"):
        gs.SamSegmenter(tiny_sam(seed=0, global_attn_indexes=()), precision="fast", fast=True)


def test_old_detector_keywords_warn_and_mean_a_precision():
    from grounded_sam.models.build import tiny_detector

    with pytest.warns(DeprecationWarning, match="precision='fast-fp32'"):
        old = tiny_detector(fast=True, fast_dtype="fp32")
    new = tiny_detector(precision="fast-fp32")
    assert old.precision == new.precision == Precision(fast=True, dtype="fp32")
    assert old.config() == new.config()
    assert tiny_detector(precision="autocast-bf16").fast is False  # autocast is SAM's encoder


def test_from_legacy_without_old_keywords_is_the_setting_itself():
    assert from_legacy("fast-bf16", owner="x") == Precision(fast=True, dtype="bf16")


@pytest.mark.parametrize(
    "precision, fast, dtype",
    [
        ("exact", False, None),
        ("fast", True, None),
        ("fast-fp32", True, "fp32"),
        ("fast-bf16", True, "bf16"),
        ("autocast-bf16", False, "bf16"),
    ],
)
def test_sam2_takes_every_precision(precision, fast, dtype):
    pytest.importorskip("sam2")
    from grounded_sam.models.build import tiny_segmenter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bf16 emulated on AVX2-only CPUs
        seg = tiny_segmenter("sam2", precision=precision)
    assert isinstance(seg, gs.Sam2Segmenter)
    assert (seg.fast, seg.dtype, seg.precision.name) == (fast, dtype, precision)
    assert seg.fast_decoder == fast  # on the CPU the fast path has its own decoder
    config = seg.config()
    assert config.get("precision", "exact") == precision


@pytest.mark.parametrize(
    "precision, fast, dtype, expected",
    [
        (None, False, None, "exact"),
        (None, True, None, "fast"),
        (None, True, "bf16", "fast-bf16"),
        (None, False, "bf16", "autocast-bf16"),
        (None, False, "fp32", "exact"),
        ("fast-fp32", False, None, "fast-fp32"),
    ],
)
def test_command_line_flags_spell_one_precision(precision, fast, dtype, expected):
    from grounded_sam.cli.common import precision_from_args

    args = argparse.Namespace(precision=precision, fast=fast, dtype=dtype)
    assert precision_from_args(args) == expected


def test_command_line_precision_with_fast_is_a_usage_error():
    from grounded_sam.cli.common import UsageError, precision_from_args

    with pytest.raises(UsageError, match="--precision alone"):
        precision_from_args(argparse.Namespace(precision="fast", fast=True, dtype=None))
