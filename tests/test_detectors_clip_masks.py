"""ClipMaskDetector: known answers with a constructed CLIP-like encoder, and end to end with a
tiny random open_clip model and a tiny random SAM."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image

from grounded_sam.detectors.clip_masks import ClipMaskDetector
from grounded_sam.errors import MissingCheckpointError
from grounded_sam.masks import masks_to_xyxy
from grounded_sam.types import Detections

torch.set_num_threads(2)

H, W = 120, 160
GREY = (128, 128, 128)
RED_BOX = (10, 20, 40, 50)  # xyxy pixel edges
GREEN_BOX = (60, 70, 120, 110)


def _box_mask(box: tuple[int, int, int, int]) -> np.ndarray:
    x1, y1, x2, y2 = box
    m = np.zeros((H, W), bool)
    m[y1:y2, x1:x2] = True
    return m


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray]:
    """A grey image with a red square and a green rectangle; proposals: red, green, the rest."""
    img = np.empty((H, W, 3), np.uint8)
    img[:] = GREY
    red, green = _box_mask(RED_BOX), _box_mask(GREEN_BOX)
    img[red] = (230, 20, 20)
    img[green] = (20, 220, 30)
    return img, np.stack([red, green, ~(red | green)])


class ProposalSource:
    """Segmenter-like input fixture: generate() returns fixed proposal masks and records its options."""

    def __init__(self, masks: np.ndarray):
        self.masks = masks
        self.calls: list[dict] = []

    def generate(self, image: np.ndarray, **options) -> Detections:
        self.calls.append(options)
        n = len(self.masks)
        return Detections(
            xyxy=masks_to_xyxy(self.masks),
            scores=np.linspace(0.9, 0.7, n),
            phrases=[""] * n,
            class_id=np.full(n, -1),
            masks=self.masks,
            mask_scores=np.linspace(0.9, 0.7, n),
            image_size=self.masks.shape[1:],
            data={"stability_score": np.full(n, 0.95, np.float32)},
        )


WORDS = {"red": 1, "green": 2, "blue": 3, "background": 4, "nothing": 4}


class ColourClip(torch.nn.Module):
    """A CLIP-like encoder with constructed embeddings in 4-D.

    Image: (mean R, G, B of the crop in [0, 1] minus 0.5, then 0.25): a grey crop points at the
    4th axis. Text: the sum of fixed word vectors ("red" -> (1, -.5, -.5, 0), "background" and
    "nothing" -> (0, 0, 0, 1)); other words are zero.
    """

    def __init__(self):
        super().__init__()
        table = torch.zeros(5, 4)
        table[1] = torch.tensor([1.0, -0.5, -0.5, 0])
        table[2] = torch.tensor([-0.5, 1.0, -0.5, 0])
        table[3] = torch.tensor([-0.5, -0.5, 1.0, 0])
        table[4] = torch.tensor([0.0, 0, 0, 1])
        self.words = torch.nn.Embedding.from_pretrained(table)
        self.logit_scale = torch.nn.Parameter(torch.tensor(np.log(50.0), dtype=torch.float32))
        self.image_batches: list[int] = []
        self.text_calls = 0

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        self.image_batches.append(len(pixels))
        colour = pixels.mean(dim=(2, 3)) - 0.5
        return torch.cat([colour, torch.full((len(pixels), 1), 0.25)], dim=1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        self.text_calls += 1
        return self.words(tokens).sum(dim=1)


def preprocess(im: Image.Image) -> torch.Tensor:
    arr = np.asarray(im.resize((16, 16), Image.NEAREST), dtype=np.float32) / 255
    return torch.from_numpy(arr).permute(2, 0, 1)


def tokenize(texts: list[str]) -> torch.Tensor:
    out = torch.zeros(len(texts), 8, dtype=torch.int64)
    for i, text in enumerate(texts):
        ids = [WORDS.get(w, 0) for w in re.findall(r"[a-z]+", text.lower())][:8]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
    return out


def make(masks: np.ndarray, **kw) -> tuple[ClipMaskDetector, ColourClip, ProposalSource]:
    clip, source = ColourClip(), ProposalSource(masks)
    return ClipMaskDetector(source, clip, preprocess, tokenize, **kw), clip, source


# ---------------------------------------------------------------------------- known answers
def test_each_prompt_keeps_and_labels_the_right_proposal(scene):
    img, masks = scene
    det, _, _ = make(masks)

    red = det.detect(img, "red")
    assert red.phrases == ["red"] and red.class_id.tolist() == [0]
    np.testing.assert_array_equal(red.xyxy, [RED_BOX])
    assert red.scores.dtype == np.float32 and 0.9 < red.scores[0] <= 1.0
    assert red.masks is None and red.mask_scores is None  # boxes go back to SAM
    assert red.image_size == (H, W)
    assert red.data["proposal_index"].tolist() == [0]

    both = det.detect(img, "green . red")
    assert sorted(zip(both.phrases, both.class_id.tolist(), strict=True)) == [
        ("green", 0),
        ("red", 1),
    ]
    boxes = {p: tuple(b) for p, b in zip(both.phrases, both.xyxy.tolist(), strict=True)}
    assert boxes == {"red": RED_BOX, "green": GREEN_BOX}
    assert np.all(np.diff(both.scores) <= 0)  # sorted by score

    as_list = det.detect(img, ["Blue", "red"])
    assert as_list.phrases == ["red"] and as_list.class_id.tolist() == [1]


def test_absent_class_returns_nothing(scene):
    img, masks = scene
    det, _, _ = make(masks, score_threshold=0.0)
    out = det.detect(img, "blue")
    assert len(out) == 0 and out.image_size == (H, W)
    assert out.xyxy.shape == (0, 4) and out.class_id.dtype == np.int64

    # Without background prompts nothing can say "not here": every proposal becomes "blue".
    no_bg, _, _ = make(masks, score_threshold=0.0, background_prompts=(), nms_threshold=None)
    assert no_bg.detect(img, "blue").phrases == ["blue"] * 3


def test_keep_proposal_masks_and_options_pass_through(scene):
    img, masks = scene
    with_empty = np.concatenate([np.zeros((1, H, W), bool), masks])  # an empty proposal first
    det, _, source = make(with_empty, keep_proposal_masks=True, amg_options={"points_per_side": 8})
    out = det.detect(img, "green", pred_iou_thresh=0.5)
    assert source.calls == [{"points_per_side": 8, "pred_iou_thresh": 0.5}]
    np.testing.assert_array_equal(out.masks, masks[1:2])
    assert out.data["proposal_index"].tolist() == [2]  # row of generate()'s result
    np.testing.assert_allclose(out.mask_scores, [np.linspace(0.9, 0.7, 4)[2]])  # its IoU
    assert out.data["stability_score"].tolist() == [pytest.approx(0.95)]
    empty = det.detect(img, "blue")
    assert empty.masks.shape == (0, H, W)


def test_crops_are_batched_and_text_embeddings_cached(scene):
    img, masks = scene
    det, clip, _ = make(masks, batch_size=2)
    det.detect(img, "red . green")
    assert clip.image_batches == [2, 1]  # 3 proposals, never one forward per mask
    calls = clip.text_calls
    det.detect(img, "green")  # classes and background prompts already cached
    assert clip.text_calls == calls
    det.detect(img, "blue")
    assert clip.text_calls == calls + 1


def test_boxes_come_from_the_masks_once_per_call(scene, monkeypatch):
    """One masks_to_xyxy over the proposals feeds the crops, the result's boxes and the NMS."""
    import grounded_sam.detectors.clip_masks as clip_masks

    img, masks = scene
    det, _, _ = make(masks, nms_threshold=0.5)
    calls = []

    def counting(m):
        calls.append(m.shape)
        return masks_to_xyxy(m)

    monkeypatch.setattr(clip_masks, "masks_to_xyxy", counting)
    out = det.detect(img, "red . green")
    assert calls == [masks.shape]  # every proposal at once, nothing per crop or per kept row
    assert len(out) == 2
    picked = masks[out.data["proposal_index"]]
    np.testing.assert_array_equal(out.xyxy, masks_to_xyxy(picked))
    # a crop from the known box is the crop from the mask
    box = masks_to_xyxy(masks[1:2])[0]
    np.testing.assert_array_equal(det.crop(img, masks[1], box), det.crop(img, masks[1]))


def test_crop_fills_outside_the_mask_and_pads_to_square(scene):
    img, masks = scene
    det, _, _ = make(masks)
    crop = det.crop(img, masks[1])  # 60 x 40 green box -> 60 x 60
    assert crop.shape == (60, 60, 3)
    fill = np.array(det.fill)
    assert np.all(crop[:10] == fill) and np.all(crop[50:] == fill)
    assert np.all(crop[10:50] == (20, 220, 30))
    # L-shaped mask: the box corner outside the mask is filled
    m = np.zeros((H, W), bool)
    m[0:10, 0:20] = True
    m[0:20, 0:10] = True
    crop = det.crop(img, m)
    assert crop.shape == (20, 20, 3) and np.all(crop[15, 15] == fill)
    assert det.fill == (123, 117, 104)  # CLIP's normalisation mean


def test_nms_and_top_k(scene):
    img, masks = scene
    # a near-duplicate of the red proposal
    dup = masks[0].copy()
    dup[RED_BOX[1] : RED_BOX[3], RED_BOX[2]] = True
    many = np.concatenate([masks, dup[None]])
    det, _, _ = make(many)
    out = det.detect(img, "red")
    assert len(out) == 1
    det, _, _ = make(many, nms_threshold=None)
    assert len(det.detect(img, "red")) == 2
    det, _, _ = make(many, top_k=1, nms_threshold=None)
    assert len(det.detect(img, "red . green")) == 1


def test_empty_proposals(scene):
    img, _ = scene
    det, clip, _ = make(np.zeros((0, H, W), bool))
    out = det.detect(img, "red")
    assert len(out) == 0 and out.image_size == (H, W) and clip.image_batches == []


# ---------------------------------------------------------------------------- open_clip
def test_from_pretrained_reads_local_files_only(tmp_path):
    from grounded_sam.testing.clip import tiny_clip

    model, _, _ = tiny_clip(seed=3)
    path = tmp_path / "tiny.pt"
    torch.save(model.state_dict(), path)
    source = ProposalSource(np.zeros((0, 8, 8), bool))
    det = ClipMaskDetector.from_pretrained("gs-tiny-clip", path, segmenter=source)
    for a, b in zip(det.clip_model.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert det.segmenter is source

    empty = dict(segmenter=source, models_dir=tmp_path / "models", cache_dir=tmp_path / "cache")
    # the registry's CLIP entry: the error names the file and `grounded-sam download clip_vit_b32`
    for args in (("ViT-B-32", "laion2b_s34b_b79k"), ("clip_vit_b32",)):
        with pytest.raises(MissingCheckpointError, match="grounded-sam download clip_vit_b32") as e:
            ClipMaskDetector.from_pretrained(*args, **empty)
        assert e.value.path == tmp_path / "models/clip-vit-b-32-laion2b/open_clip_model.safetensors"
    # a tag the registry does not list: where to get it by hand
    with pytest.raises(MissingCheckpointError, match="ViT-B-32/openai are not on this machine"):
        ClipMaskDetector.from_pretrained("ViT-B-32", "openai", **empty)
    # the lookup itself is tested in test_models_clip_loading.py
    with pytest.raises(MissingCheckpointError, match="nope.pt"):
        ClipMaskDetector.from_pretrained("gs-tiny-clip", tmp_path / "nope.pt", segmenter=source)
    with pytest.raises(ValueError, match="known tags"):
        ClipMaskDetector.from_pretrained("ViT-B-32", "no-such-tag", segmenter=source)


def test_end_to_end_with_tiny_open_clip_and_tiny_sam(scene):
    from grounded_sam.segmenters.sam import SamSegmenter
    from grounded_sam.testing.clip import tiny_clip
    from grounded_sam.testing.sam import tiny_sam

    img, _ = scene
    model, preprocess, tokenizer = tiny_clip(seed=0)
    image_batches: list[int] = []
    text_batches: list[int] = []
    model.visual.register_forward_hook(lambda m, args, out: image_batches.append(len(args[0])))
    model.token_embedding.register_forward_hook(
        lambda m, args, out: text_batches.append(len(args[0]))
    )
    segmenter = SamSegmenter(tiny_sam(seed=0))
    options = dict(points_per_side=3, pred_iou_thresh=0, stability_score_thresh=0)
    options["box_nms_thresh"] = 1.0  # keep many proposals
    proposals = segmenter.generate(img, **options)
    n = int(proposals.masks.any(axis=(1, 2)).sum())
    assert n >= 5

    classes = ["cat", "dog", "traffic light"]
    det = ClipMaskDetector(
        segmenter,
        model,
        preprocess,
        tokenizer,
        score_threshold=0.0,
        batch_size=4,
        nms_threshold=None,
        amg_options=options,
    )
    out = det.detect(img, " . ".join(classes))
    assert image_batches == [4] * (n // 4) + ([n % 4] if n % 4 else [])
    assert text_batches == [len(classes) * len(det.templates) + len(det.background_prompts)]
    assert out.image_size == (H, W) and out.masks is None
    assert out.xyxy.dtype == np.float32 and out.scores.dtype == np.float32
    assert out.class_id.dtype == np.int64 and set(out.class_id.tolist()) <= {0, 1, 2}
    assert out.phrases == [classes[c] for c in out.class_id]
    assert (
        (out.xyxy[:, :2] >= 0).all() and (out.xyxy[:, 2] <= W).all() and (out.xyxy[:, 3] <= H).all()
    )
    # the winning probability of a softmax over 3 classes + 2 background prompts is >= 1/5
    assert ((out.scores >= 0.2 - 1e-6) & (out.scores <= 1)).all()
    assert np.all(np.diff(out.scores) <= 0)
    again = det.detect(img, classes)
    assert len(text_batches) == 1  # text embeddings cached
    np.testing.assert_array_equal(again.xyxy, out.xyxy)
    np.testing.assert_array_equal(again.scores, out.scores)

    # Without background prompts every non-empty proposal gets a class; masks kept on request.
    every = ClipMaskDetector(
        segmenter,
        model,
        preprocess,
        tokenizer,
        score_threshold=0.0,
        nms_threshold=None,
        background_prompts=(),
        keep_proposal_masks=True,
        amg_options=options,
    ).detect(img, "cat")
    assert len(every) == n and every.phrases == ["cat"] * n
    picked = proposals[every.data["proposal_index"]]
    np.testing.assert_array_equal(every.masks, picked.masks)
    np.testing.assert_array_equal(every.mask_scores, picked.scores)
    np.testing.assert_array_equal(every.xyxy, masks_to_xyxy(picked.masks))

    nothing = det.detect(img, "cat", pred_iou_thresh=10.0)
    assert len(nothing) == 0 and nothing.image_size == (H, W)
