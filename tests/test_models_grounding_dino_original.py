"""Original Grounding DINO checkpoints on transformers' model: the same numbers as the original code.

The reference is IDEA-Research's own implementation (PyPI ``rf-groundingdino``), built at test
size from its real config file and builders (see ``tests/_groundingdino_reference.py``), with
random weights; its state dict goes through our converter and both models see the same image
and prompt.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from _groundingdino_reference import (  # noqa: E402
    original_grounding_dino,
    reference_module,
    tiny_config_values,
    tiny_original,
)

from grounded_sam.errors import CheckpointError, MissingCheckpointError  # noqa: E402
from grounded_sam.models.grounding_dino_original import (  # noqa: E402
    convert_state_dict,
    fill_unused_targets,
    load_original,
    read_original,
)
from grounded_sam.models.grounding_dino_original_config import infer_config  # noqa: E402
from grounded_sam.models.loading import check_state_dict  # noqa: E402

PROMPT = "cat . traffic light . dog ."
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference():
    """``(original model, its text-encoder folder)``."""
    model, _, folder = tiny_original()
    return model, folder


@pytest.fixture(scope="module")
def checkpoint():
    return tiny_original()[1]


def _tiny_config(state_dict):
    return infer_config(state_dict, original_config=tiny_config_values())


@pytest.fixture(scope="module")
def converted(checkpoint):
    """The checkpoint file loaded onto transformers' model by the code under test."""
    return load_original(checkpoint, _tiny_config(read_original(checkpoint)))


def _run_both(reference, converted, image):
    from transformers import AutoTokenizer

    original, folder = reference
    tokens = AutoTokenizer.from_pretrained(str(folder))([PROMPT], return_tensors="pt")
    h, w = image.shape[-2:]
    with torch.no_grad():
        ref = original(image, captions=[PROMPT])
        ours = converted(
            pixel_values=image, pixel_mask=torch.ones(1, h, w, dtype=torch.long), **tokens
        )
    return ref, ours, tokens


def test_converted_model_computes_what_the_original_computes(reference, converted):
    image = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    ref, ours, tokens = _run_both(reference, converted, image)
    n = tokens["input_ids"].shape[1]
    logits_diff = (ref["pred_logits"][..., :n] - ours.logits[..., :n]).abs().max().item()
    boxes_diff = (ref["pred_boxes"] - ours.pred_boxes).abs().max().item()
    print(f"max abs diff: pred_logits {logits_diff:.2e}, pred_boxes {boxes_diff:.2e}")
    assert ref["pred_logits"].shape == ours.logits.shape
    assert logits_diff <= TOLERANCE
    assert boxes_diff <= TOLERANCE
    # beyond the prompt both pad with -inf up to max_text_len
    assert torch.isneginf(ref["pred_logits"][..., n:]).all()
    assert torch.isneginf(ours.logits[..., n:]).all()
    # realistic magnitudes: logits of a few units (a trained model's range), so the scores
    # (sigmoids) are not saturated and a logit error would show in them
    logits = ref["pred_logits"][..., :n]
    print(f"reference logits in [{logits.min():.2f}, {logits.max():.2f}]")
    assert logits.abs().max() < 10 and logits.sigmoid().max() < 0.999


def _gap_threshold(values):
    """The middle of the widest gap between sorted ``values``, within their middle half."""
    v = values.flatten().sort().values
    lo, hi = len(v) // 4, 3 * len(v) // 4
    i = lo + int((v[lo + 1 : hi + 1] - v[lo:hi]).argmax())
    return float(v[i] + v[i + 1]) / 2


def test_same_detections_after_post_processing(reference, converted):
    """The original's own thresholding and phrase extraction on both models' outputs."""
    reference_module()
    from groundingdino.util.utils import get_phrases_from_posmap
    from transformers import AutoTokenizer

    image = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(4))
    ref, ours, tokens = _run_both(reference, converted, image)
    tokenizer = AutoTokenizer.from_pretrained(str(reference[1]))
    tokenized = tokenizer(PROMPT)

    def detections(logits, boxes, box_threshold, text_threshold):
        probs = logits[0].sigmoid()
        keep = probs.amax(-1) > box_threshold
        phrases = [
            get_phrases_from_posmap(p > text_threshold, tokenized, tokenizer).replace(".", "")
            for p in probs[keep]
        ]
        return boxes[0][keep], probs[keep].amax(-1), phrases

    # thresholds where no score lies near them (random weights have no natural ones)
    n = tokens["input_ids"].shape[1]
    probs = ref["pred_logits"][0, :, :n].sigmoid()
    box_threshold = _gap_threshold(probs.amax(-1))
    text_threshold = _gap_threshold(probs.flatten())
    ref_boxes, ref_scores, ref_phrases = detections(
        ref["pred_logits"], ref["pred_boxes"], box_threshold, text_threshold
    )
    our_boxes, our_scores, our_phrases = detections(
        ours.logits, ours.pred_boxes, box_threshold, text_threshold
    )
    print(f"thresholds {box_threshold:.3f}/{text_threshold:.3f}: phrases {ref_phrases}")
    assert 0 < len(ref_phrases) < probs.shape[0]
    assert len(set(ref_phrases)) > 1
    assert our_phrases == ref_phrases
    assert any(ref_phrases)
    torch.testing.assert_close(our_boxes, ref_boxes, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(our_scores, ref_scores, atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(
    ("config_file", "embed_dim", "depths", "window"),
    [
        ("GroundingDINO_SwinT_OGC.py", 96, [2, 2, 6, 2], 7),
        ("GroundingDINO_SwinB_cfg.py", 128, [2, 2, 18, 2], 12),
    ],
)
def test_full_size_key_sets_map_completely(
    config_file, embed_dim, depths, window, tmp_path, monkeypatch
):
    """The official architectures, shapes only (meta device, no weights): every key of the
    original maps onto a key of transformers' model with the same shape, and none is left."""
    from transformers import BertConfig, BertModel, GroundingDinoForObjectDetection

    reference_module()
    from groundingdino.util import get_tokenlizer

    from grounded_sam.testing.grounding_dino import tiny_grounding_dino_processor

    tiny_grounding_dino_processor(tmp_path).tokenizer.save_pretrained(tmp_path)
    # bert-base-uncased's architecture, on the meta device, instead of a hub download
    monkeypatch.setattr(
        get_tokenlizer,
        "get_pretrained_language_model",
        lambda _name: BertModel(BertConfig(vocab_size=30522)),
    )
    with torch.device("meta"):
        original = original_grounding_dino(config_file, tmp_path)
        state_dict = original.state_dict()
        config = infer_config(state_dict)
        target = GroundingDinoForObjectDetection(config)
    assert config.backbone_config.embed_dim == embed_dim
    assert list(config.backbone_config.depths) == depths
    assert config.backbone_config.window_size == window
    assert config.text_config.num_attention_heads == 12
    converted = convert_state_dict(state_dict)
    fill_unused_targets(converted, target)
    check_state_dict(target, converted, source=config_file)  # raises, listing keys, if not


def test_truncated_checkpoint_is_a_checkpoint_error_naming_the_file(checkpoint, tmp_path):
    truncated = tmp_path / "groundingdino_swint_ogc.pth"
    truncated.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint") as err:
        load_original(truncated)
    assert str(truncated) in str(err.value)


def test_wrong_checkpoint_is_a_checkpoint_error_naming_the_file_and_the_problem(tmp_path):
    wrong = tmp_path / "sam_vit_b.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(2, 3, 4, 4)}, wrong)
    with pytest.raises(CheckpointError, match="not an original Grounding DINO checkpoint") as err:
        load_original(wrong)
    assert str(wrong) in str(err.value) and "feat_map.weight" in str(err.value)


def test_missing_or_unknown_keys_are_listed(reference):
    state_dict = dict(reference[0].state_dict())
    del state_dict["transformer.decoder.layers.1.linear1.weight"]
    state_dict["transformer.decoder.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="transformer.decoder.extra.weight"):
        load_original(state_dict, _tiny_config(state_dict))
    del state_dict["transformer.decoder.extra.weight"]
    with pytest.raises(CheckpointError, match=r"missing keys \(1: model\.decoder\.layers\.1\.fc1"):
        load_original(state_dict, _tiny_config(state_dict))


def test_missing_file_names_it(tmp_path):
    with pytest.raises(MissingCheckpointError, match="nothing.pth"):
        load_original(tmp_path / "nothing.pth")
