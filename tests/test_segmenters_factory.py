"""The segmenter factory: registry entries and "tiny random" to SamSegmenter / Sam2Segmenter."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("sam2", reason="needs the sam2 package: pip install -e '.[sam2]'")

from grounded_sam.models.registry import get_entry  # noqa: E402
from grounded_sam.segmenters.factory import build_segmenter, is_sam2, tiny_segmenter  # noqa: E402
from grounded_sam.segmenters.sam import SamSegmenter  # noqa: E402
from grounded_sam.segmenters.sam2 import Sam2Segmenter  # noqa: E402
from grounded_sam.segmenters.sam2_loading import SAM2_CONFIGS, build_sam2_model  # noqa: E402


def test_is_sam2():
    assert is_sam2(get_entry("sam2.1_hiera_tiny")) and is_sam2("sam2.1_hiera_large")
    assert is_sam2("sam2")
    assert not is_sam2(get_entry("sam_vit_b")) and not is_sam2("vit_b")


def test_a_registry_sam2_entry_builds_a_sam2_segmenter_from_an_official_layout_file(tmp_path):
    # the official Hiera-T architecture, random weights, saved as Meta's .pt files are
    torch.manual_seed(0)
    model = build_sam2_model(**SAM2_CONFIGS["sam2.1_hiera_tiny"])
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, path)
    entry = get_entry("sam2.1_hiera_tiny")
    seg = build_segmenter(entry, path, device="cpu", precision="fast-fp32")
    assert isinstance(seg, Sam2Segmenter)
    assert (seg.fast, seg.dtype, seg.fast_decoder) == (True, "fp32", True)
    loaded = seg.model.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in model.state_dict().items())
    assert not build_segmenter(entry, path).fast  # exact by default
    with pytest.raises(ValueError, match="must be one of"):
        build_segmenter(entry, path, precision="fast-int3")


def test_tiny_segmenters():
    assert isinstance(tiny_segmenter("sam"), SamSegmenter)
    assert isinstance(tiny_segmenter("sam2"), Sam2Segmenter)
    assert isinstance(tiny_segmenter("sam2.1_hiera_tiny"), Sam2Segmenter)


def test_a_missing_sam2_package_says_how_to_install_it(monkeypatch):
    import sys

    from grounded_sam.testing.sam2 import tiny_sam2

    model = tiny_sam2()
    monkeypatch.setitem(sys.modules, "sam2", None)  # as if not installed
    with pytest.raises(ImportError, match=r"pip install 'grounded-sam\[sam2\]'"):
        Sam2Segmenter(model)
    with pytest.raises(ImportError, match="needs the sam2 package"):
        build_sam2_model()
