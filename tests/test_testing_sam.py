"""The tiny SAM kit: seeded, real segment_anything modules, usable by SAM's own tools."""

from __future__ import annotations

import numpy as np
import torch
from segment_anything import SamAutomaticMaskGenerator, SamPredictor

from grounded_sam.testing.sam import build_tiny_sam, tiny_sam, tiny_sam_checkpoint


def test_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = tiny_sam(seed=0), tiny_sam(seed=0), tiny_sam(seed=1)
    after = torch.rand(3)
    assert torch.equal(before, after)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert not a.training
    # positional embeddings are random (SAM initialises them to zero)
    assert a.image_encoder.pos_embed.abs().sum() > 0


def test_works_with_sam_predictor_and_automatic_mask_generator():
    sam = tiny_sam(seed=0)
    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    assert predictor.features.shape == (1, 32, 64, 64)
    masks, iou, low = predictor.predict(
        point_coords=np.array([[10, 20]]), point_labels=np.array([1])
    )
    assert masks.shape == (3, 48, 64) and iou.shape == (3,) and low.shape == (3, 256, 256)

    generator = SamAutomaticMaskGenerator(
        sam, points_per_side=4, pred_iou_thresh=-10.0, stability_score_thresh=0.0
    )
    records = generator.generate(image)
    assert records and records[0]["segmentation"].shape == (48, 64)


def test_real_width_option_and_checkpoint(tmp_path):
    wide = build_tiny_sam(prompt_embed_dim=256)
    assert wide.prompt_encoder.embed_dim == 256
    path = tiny_sam_checkpoint(tmp_path / "sub" / "tiny.pth", seed=2)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    ref = tiny_sam(seed=2).state_dict()
    assert sd.keys() == ref.keys() and all(torch.equal(sd[k], ref[k]) for k in ref)
