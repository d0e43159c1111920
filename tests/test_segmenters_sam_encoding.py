"""sam_encoding: the encoder dtype setting and encode_image against SamPredictor.set_image."""

from __future__ import annotations

import pytest
import torch
from _images import blob_image
from segment_anything import SamPredictor
from segment_anything.utils.transforms import ResizeLongestSide

from grounded_sam.segmenters.sam_encoding import ImageEmbedding, encode_image, parse_encoder_dtype
from grounded_sam.testing.sam import tiny_sam

pytestmark = pytest.mark.cpu_kind  # run again under an AVX2 cap (scripts/test.sh)

torch.set_num_threads(2)


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        (None, torch.float32),
        ("fp32", torch.float32),
        ("torch.float32", torch.float32),
        ("BF16", torch.bfloat16),
        ("bfloat16", torch.bfloat16),
        (torch.bfloat16, torch.bfloat16),
        ("half", torch.float16),
        (torch.float16, torch.float16),
    ],
)
def test_parse_encoder_dtype(spelling, expected):
    assert parse_encoder_dtype(spelling) is expected


@pytest.mark.parametrize(
    ("bad", "message"),
    [("auto", "unknown dtype 'auto'; use one of"), ("int8", "unknown dtype"), (torch.int8, "got")],
)
def test_parse_encoder_dtype_refuses_with_the_accepted_spellings(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_encoder_dtype(bad)


def test_encode_image_equals_sam_predictor_and_autocast_stays_close():
    sam = tiny_sam(seed=1)
    img = blob_image(90, 130, seed=2)
    predictor = SamPredictor(sam)
    predictor.set_image(img)
    transform = ResizeLongestSide(sam.image_encoder.img_size)
    cpu = torch.device("cpu")

    emb = encode_image(sam, transform, img, "k", device=cpu, autocast_dtype=None)
    assert isinstance(emb, ImageEmbedding) and emb.key == "k"
    assert emb.features.dtype == torch.float32
    assert torch.equal(emb.features, predictor.features)
    assert emb.input_size == tuple(predictor.input_size) == (709, 1024)  # 90 * 1024 / 130
    assert emb.original_size == tuple(predictor.original_size) == (90, 130)
    same = encode_image(sam, transform, img, "k", device=cpu, autocast_dtype=torch.float32)
    assert torch.equal(same.features, emb.features)

    bf16 = encode_image(sam, transform, img, "k", device=cpu, autocast_dtype=torch.bfloat16)
    assert bf16.features.dtype == torch.float32
    rel = float((bf16.features - emb.features).norm() / emb.features.norm())
    assert 0 < rel < 0.1  # ran in bfloat16, and computes the same thing
