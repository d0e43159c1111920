"""openvino_encoder: OpenVINO's fp32 compilation of SAM's encoder equals segment_anything's."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _images import blob_image

from grounded_sam.segmenters.openvino_encoder import OpenVinoImageEncoder, weights_key
from grounded_sam.segmenters.sam import SamSegmenter
from grounded_sam.testing.sam import tiny_sam
from grounded_sam.types import Detections

# Not cpu_kind: under ONEDNN_MAX_CPU_ISA=AVX2 on an AMX machine OpenVINO's CPU plugin has no
# Softmax kernel at all, so that cap cannot imitate an AVX2 CPU for it.

torch.set_num_threads(2)


def _pixels(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(seed))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def sam():
    return tiny_sam(seed=0)


def test_outputs_equal_the_reference_up_to_float_rounding(sam, tmp_path):
    x = _pixels()
    with torch.no_grad():
        ref = sam.image_encoder(x)
    enc = OpenVinoImageEncoder(sam.image_encoder, cache_dir=tmp_path)
    out = enc(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert _rel(out, ref) < 1e-5
    assert not enc.from_cache


def test_the_converted_graph_is_cached_by_weights(sam, tmp_path):
    x = _pixels(1)
    first = OpenVinoImageEncoder(sam.image_encoder, cache_dir=tmp_path)
    again = OpenVinoImageEncoder(sam.image_encoder, cache_dir=tmp_path)
    assert again.from_cache and torch.equal(again(x), first(x))
    assert len(list(tmp_path.glob("*.xml"))) == 1 and not list(tmp_path.glob(".*"))
    other = tiny_sam(seed=1)
    assert weights_key(other.image_encoder, 1024) != weights_key(sam.image_encoder, 1024)
    changed = OpenVinoImageEncoder(other.image_encoder, cache_dir=tmp_path)
    assert not changed.from_cache and len(list(tmp_path.glob("*.xml"))) == 2
    with torch.no_grad():
        assert _rel(changed(x), other.image_encoder(x)) < 1e-5


def test_refuses_an_input_of_another_shape(sam):
    enc = OpenVinoImageEncoder(sam.image_encoder)
    with pytest.raises(ValueError, match=r"\(1, 3, 1024, 1024\)"):
        enc(torch.zeros(1, 3, 512, 512))


def test_segmenter_on_openvino_gives_the_reference_embedding_and_masks(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUNDED_SAM_MODELS", str(tmp_path))  # where the graph is cached
    image = blob_image(300, 400, seed=3)
    boxes = np.array([[10, 20, 200, 150], [150, 100, 390, 290]], np.float32)
    dets = Detections(
        boxes, np.ones(2, np.float32), ["a", "b"], np.zeros(2, np.int64), image_size=(300, 400)
    )
    exact = SamSegmenter(tiny_sam(seed=0))
    ov = SamSegmenter(tiny_sam(seed=0), fast=True, fast_decoder=False, encoder_runtime="openvino")
    ref_emb, emb = exact.embed(image), ov.embed(image)
    assert ov.resolved_encoder_runtime() == "openvino" and ov._openvino_encoder is not None
    assert _rel(emb.features, ref_emb.features) < 1e-5
    ref, out = exact.segment(image, dets), ov.segment(image, dets)
    assert ref.masks.any()
    assert (ref.masks != out.masks).sum() <= 4  # logits within 1e-5 of 0 may flip
    np.testing.assert_allclose(out.mask_scores, ref.mask_scores, rtol=1e-4, atol=1e-5)
    assert list((tmp_path / "cache" / "openvino").glob("*.xml"))


def test_openvino_is_an_opt_in_of_the_fast_path():
    assert SamSegmenter(tiny_sam(), fast=True).resolved_encoder_runtime() == "torch"
    chosen = SamSegmenter(tiny_sam(), fast=True, encoder_runtime="openvino")
    assert chosen.resolved_encoder_runtime() == "openvino"
    slow = SamSegmenter(tiny_sam(), encoder_runtime="openvino")  # not fast: the exact encoder
    assert slow.resolved_encoder_runtime() == "torch"
    with pytest.raises(ValueError, match="encoder_runtime"):
        SamSegmenter(tiny_sam(), encoder_runtime="tensorrt")
