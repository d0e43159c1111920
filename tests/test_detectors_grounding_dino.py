"""GroundingDinoDetector on a tiny random Grounding DINO built from transformers' classes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from grounded_sam.detectors.grounding_dino import GroundingDinoDetector
from grounded_sam.detectors.phrases import Prompt, PromptTokens
from grounded_sam.detectors.vocab_chunks import plan_chunks, reuse_backbone
from grounded_sam.errors import CheckpointError, MissingCheckpointError, PromptError
from grounded_sam.geometry import box_iou, nms
from grounded_sam.testing.grounding_dino import (
    save_tiny_grounding_dino,
    tiny_grounding_dino,
    write_tiny_vocab,
)

torch.set_num_threads(2)

PROMPT = "cat . traffic light . toothbrush . t-shirt"
CLASSES = ["cat", "traffic light", "toothbrush", "t-shirt"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_grounding_dino(tmp_path_factory.mktemp("tiny_gd"), seed=0)


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def reference(model, processor, image, text, box_threshold, text_threshold):
    """transformers' own pipeline: processor -> model -> post_process, boxes in original pixels."""
    h, w = image.shape[:2]
    inputs = processor(images=image, text=text, return_tensors="pt")
    with torch.inference_mode():
        out = model(**inputs)
    (res,) = processor.post_process_grounded_object_detection(
        out,
        inputs["input_ids"],
        threshold=box_threshold,
        text_threshold=text_threshold,
        target_sizes=[(h, w)],
    )
    return inputs, res["scores"].numpy(), res["boxes"].numpy()


# ---------------------------------------------------------------------------- geometry and scores


@pytest.mark.parametrize(("h", "w"), [(50, 120), (120, 50), (100, 100), (37, 211), (300, 180)])
def test_boxes_and_scores_equal_transformers_post_processing(tiny, h, w):
    model, processor = tiny
    image = random_image(h, w, seed=h * w)
    text = Prompt.from_classes(PROMPT).text
    # pick the box threshold from the scores so that some queries pass and some do not
    _, all_scores, _ = reference(model, processor, image, text, 0.0, 0.25)
    box_threshold = float(np.median(all_scores))
    inputs, ref_scores, ref_boxes = reference(model, processor, image, text, box_threshold, 0.25)
    assert 0 < len(ref_scores) < len(all_scores)

    det = GroundingDinoDetector(model, processor, box_threshold=box_threshold, text_threshold=0.25)
    dets = det.detect(image, PROMPT)

    # the detector feeds the model exactly the processor's tokens
    tokens = PromptTokens.from_tokenizer(processor.tokenizer, Prompt.from_classes(PROMPT))
    assert tokens.input_ids.tolist() == inputs["input_ids"][0].tolist()

    order = np.argsort(-ref_scores, kind="stable")
    ref_boxes = ref_boxes[order]
    ref_boxes[:, [0, 2]] = ref_boxes[:, [0, 2]].clip(0, w)
    ref_boxes[:, [1, 3]] = ref_boxes[:, [1, 3]].clip(0, h)
    assert len(dets) == len(ref_scores)
    assert dets.image_size == (h, w)
    assert dets.xyxy.dtype == np.float32 and dets.scores.dtype == np.float32
    np.testing.assert_allclose(dets.scores, ref_scores[order], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dets.xyxy, ref_boxes, rtol=1e-5, atol=1e-3)
    # pixels of the original image, not of the resized one the model saw
    assert inputs["pixel_values"].shape[-2:] != (h, w)
    assert (dets.xyxy >= 0).all()
    assert (dets.xyxy[:, [0, 2]] <= w).all() and (dets.xyxy[:, [1, 3]] <= h).all()
    assert (np.diff(dets.scores) <= 0).all()


def test_phrases_and_class_ids_agree(tiny):
    model, processor = tiny
    det = GroundingDinoDetector(model, processor, box_threshold=0.0, text_threshold=0.3)
    dets = det.detect(random_image(80, 100), PROMPT)
    assert len(dets) == model.config.num_queries
    assert dets.class_id.dtype == np.int64
    assert set(dets.class_id.tolist()) <= {-1, 0, 1, 2, 3}
    assert (dets.class_id >= 0).any()
    for c, phrase in zip(dets.class_id, dets.phrases, strict=True):
        if c < 0:
            assert phrase == ""
        else:
            assert phrase and set(phrase.split()) <= set(CLASSES[c].split())
            for bad in ("[CLS]", "[SEP]", "##", "."):
                assert bad not in phrase


def test_list_prompt_equals_string_prompt_and_input_kinds(tiny, tmp_path):
    from PIL import Image

    model, processor = tiny
    det = GroundingDinoDetector(model, processor, box_threshold=0.5)
    image = random_image(40, 70, seed=3)
    a = det.detect(image, PROMPT)
    b = det.detect(Image.fromarray(image), [" Cat", "Traffic  Light", "toothbrush.", "T-shirt"])
    path = tmp_path / "im.png"
    Image.fromarray(image).save(path)
    c = det.detect(path, PROMPT + " .")
    for other in (b, c):
        np.testing.assert_array_equal(a.xyxy, other.xyxy)
        np.testing.assert_array_equal(a.scores, other.scores)
        assert a.phrases == other.phrases
        np.testing.assert_array_equal(a.class_id, other.class_id)


def test_repeated_class_ids_point_at_the_right_name(tiny):
    model, processor = tiny
    # a repeated class is kept once (grounded_sam.classes): ids index ["cat", "dog", "traffic light"]
    classes = ["cat", "dog", "traffic light"]
    det = GroundingDinoDetector(model, processor, box_threshold=0.0, text_threshold=0.3)
    dets = det.detect(random_image(60, 60), ["cat", "dog", "Cat", "traffic light"])
    assert set(dets.class_id.tolist()) <= {-1, 0, 1, 2}
    for c, phrase in zip(dets.class_id, dets.phrases, strict=True):
        if c >= 0:
            assert set(phrase.split()) <= set(classes[c].split())


def test_class_restricted_scores_are_class_means(tiny):
    model, processor = tiny
    image = random_image(50, 90, seed=5)
    det = GroundingDinoDetector(
        model, processor, box_threshold=0.0, text_threshold=0.3, class_restricted=True
    )
    dets = det.detect(image, PROMPT)
    assert (dets.class_id >= 0).all()
    assert dets.phrases == [CLASSES[c] for c in dets.class_id]
    # recompute from the raw model outputs: mean of each class's token probabilities
    prompt = Prompt.from_classes(PROMPT)
    tokens = PromptTokens.from_tokenizer(processor.tokenizer, prompt)
    pixels, _ = det.preprocess_image(image)
    probs, _ = det.forward(pixels, tokens)
    means = np.stack([probs[:, tokens.token_class == c].mean(1) for c in range(4)], axis=1)
    expected = np.sort(means.max(1))[::-1]
    np.testing.assert_allclose(dets.scores, expected, rtol=1e-5)


# ---------------------------------------------------------------------------- options


def test_nms_modes_and_top_k(tiny):
    model, processor = tiny
    image = random_image(70, 90, seed=7)
    # random boxes rarely overlap, so a low IoU threshold makes NMS bite
    base = dict(box_threshold=0.0, text_threshold=0.3, nms_iou=0.01)
    plain = GroundingDinoDetector(model, processor, **base).detect(image, PROMPT)
    agnostic = GroundingDinoDetector(model, processor, nms="agnostic", **base).detect(image, PROMPT)
    per_class = GroundingDinoDetector(model, processor, nms="class", **base).detect(image, PROMPT)
    top = GroundingDinoDetector(model, processor, top_k=5, **base).detect(image, PROMPT)

    assert len(agnostic) <= len(per_class) <= len(plain)
    assert len(agnostic) < len(plain)
    keep = nms(plain.xyxy, plain.scores, 0.01)
    np.testing.assert_array_equal(agnostic.xyxy, plain.xyxy[np.sort(keep)])
    keep = nms(plain.xyxy, plain.scores, 0.01, groups=plain.class_id)
    np.testing.assert_array_equal(per_class.xyxy, plain.xyxy[np.sort(keep)])
    iou = box_iou(agnostic.xyxy, agnostic.xyxy)
    np.fill_diagonal(iou, 0)
    assert (iou <= 0.01).all()
    iou = box_iou(per_class.xyxy, per_class.xyxy)
    same = per_class.class_id[:, None] == per_class.class_id[None, :]
    np.fill_diagonal(iou, 0)
    assert (iou[same] <= 0.01).all()
    assert len(top) == 5
    np.testing.assert_array_equal(top.scores, plain.scores[:5])
    np.testing.assert_array_equal(top.xyxy, plain.xyxy[:5])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"box_threshold": -0.1},
        {"box_threshold": 1.5},
        {"text_threshold": 2.0},
        {"nms_iou": -1},
        {"nms": "greedy"},
        {"top_k": 0},
        {"top_k": 2.5},
    ],
)
def test_bad_options_are_rejected(tiny, kwargs):
    with pytest.raises(ValueError):
        GroundingDinoDetector(*tiny, **kwargs)


def test_empty_prompt_is_rejected(tiny):
    det = GroundingDinoDetector(*tiny)
    for prompt in ("", " . ", []):
        with pytest.raises(PromptError, match="empty prompt"):
            det.detect(random_image(20, 20), prompt)


# ---------------------------------------------------------------------------- long vocabularies


def test_plan_chunks_packs_whole_classes():
    # budget 10 - 2 = 8 tokens; each class costs its tokens + 1 for "."
    assert plan_chunks([0, 1, 2, 3], [3, 3, 1, 7], 10) == [[0, 1], [2], [3]]
    assert plan_chunks([5, 9], [1, 1], 10) == [[5, 9]]
    with pytest.raises(PromptError, match="class 7 is 8 tokens"):
        plan_chunks([7], [8], 10)


def test_300_classes_over_the_token_limit(tiny):
    model, processor = tiny
    classes = [f"object{i}" for i in range(300)]
    det = GroundingDinoDetector(model, processor, box_threshold=0.0, text_threshold=0.3)

    chunks = det.prompt_chunks(classes)
    lengths = [len(PromptTokens.from_tokenizer(processor.tokenizer, c)) for c in chunks]
    assert sum(lengths) > 256 and len(chunks) > 1
    assert all(n <= 256 for n in lengths)
    covered = np.concatenate([c.span_class for c in chunks])
    assert sorted(covered.tolist()) == list(range(300))

    dets = det.detect(random_image(60, 80), classes)
    assert len(dets) > 0
    assert ((dets.class_id >= -1) & (dets.class_id < 300)).all()
    assert (dets.class_id >= 0).any()
    # later chunks contribute too
    assert (dets.class_id >= int(chunks[1].span_class[0])).any()
    for c, phrase in zip(dets.class_id, dets.phrases, strict=True):
        assert phrase == (classes[c] if c >= 0 else "")


def test_chunks_equal_separate_runs_and_reuse_the_backbone(tiny):
    model, processor = tiny
    image = random_image(60, 80, seed=11)
    classes = [f"object{i}" for i in range(300)]
    det = GroundingDinoDetector(model, processor, box_threshold=0.0, text_threshold=0.3)
    chunks = det.prompt_chunks(classes)[:2]
    pixels, _ = det.preprocess_image(image)
    tokens = [PromptTokens.from_tokenizer(processor.tokenizer, c) for c in chunks]

    calls = []
    hook = model.model.backbone.conv_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        separate = [det.forward(pixels, t) for t in tokens]
        assert len(calls) == 2
        calls.clear()
        with reuse_backbone(model):
            shared = [det.forward(pixels, t) for t in tokens]
        assert len(calls) == 1
        calls.clear()
        # outside the block the model runs as before
        det.forward(pixels, tokens[0])
        assert len(calls) == 1
    finally:
        hook.remove()
    for (p1, b1), (p2, b2) in zip(separate, shared, strict=True):
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(b1, b2)

    # a deep copy runs its own backbone (transformers models do not pickle after a forward)
    for clone in (copy.deepcopy(model),):
        backbone = clone.model.backbone
        assert getattr(backbone.forward, "__self__", backbone) is backbone
        other = GroundingDinoDetector(clone, processor, box_threshold=0.0)
        with reuse_backbone(clone):
            got = [other.forward(pixels, t) for t in tokens]
        for (p1, b1), (p2, b2) in zip(separate, got, strict=True):
            np.testing.assert_array_equal(p1, p2)
            np.testing.assert_array_equal(b1, b2)


# ---------------------------------------------------------------------------- loading


def test_from_pretrained_loads_a_saved_directory_offline(tmp_path, tiny):
    directory = save_tiny_grounding_dino(tmp_path / "gd", seed=0)
    det = GroundingDinoDetector.from_pretrained(directory, box_threshold=0.4, nms="class")
    assert det.box_threshold == 0.4 and det.nms == "class"
    assert next(det.model.parameters()).device.type == "cpu"
    image = random_image(50, 60, seed=2)
    ref = GroundingDinoDetector(*tiny, box_threshold=0.4, nms="class").detect(image, PROMPT)
    dets = det.detect(image, PROMPT)
    np.testing.assert_allclose(dets.xyxy, ref.xyxy, atol=1e-4)
    np.testing.assert_allclose(dets.scores, ref.scores, atol=1e-6)
    assert dets.phrases == ref.phrases


def test_directory_missing_files_lists_them(tmp_path):
    directory = save_tiny_grounding_dino(tmp_path / "gd")
    (directory / "model.safetensors").unlink()
    (directory / "tokenizer.json").unlink()
    with pytest.raises(MissingCheckpointError) as err:
        GroundingDinoDetector.from_pretrained(directory)
    message = str(err.value)
    assert "model.safetensors" in message and "tokenizer.json" in message
    assert "config.json" not in message.split("lacks:")[1]
    assert "grounded-sam download" in message


def test_missing_directory_or_a_file_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere" / "gd"
    with pytest.raises(MissingCheckpointError, match="no such directory"):
        GroundingDinoDetector.from_pretrained(missing)
    file = tmp_path / "pytorch_model.bin"
    file.write_bytes(b"not a directory")
    with pytest.raises(MissingCheckpointError, match="a file"):
        GroundingDinoDetector.from_pretrained(file)
    # a .pth is taken for an original checkpoint: its tokenizer is looked for first, then the
    # file is read
    file = tmp_path / "groundingdino_swint_ogc.pth"
    file.write_bytes(b"not a checkpoint")
    with pytest.raises(MissingCheckpointError, match="bert_base_uncased_tokenizer"):
        GroundingDinoDetector.from_pretrained(file, models_dir=tmp_path / "models")
    write_tiny_vocab(tmp_path / "bert-base-uncased-tokenizer")
    with pytest.raises(CheckpointError, match=f"cannot read checkpoint {file}"):
        GroundingDinoDetector.from_pretrained(file, models_dir=tmp_path / "models")


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache, so tests mean the same on machines that cached models."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize(
    "name", ["IDEA-Research/grounding-dino-tiny", "grounding_dino_tiny", "grounding-dino-tiny"]
)
def test_model_without_local_copy_names_the_download_command(tmp_path, empty_hf_cache, name):
    with pytest.raises(MissingCheckpointError) as err:
        GroundingDinoDetector.from_pretrained(name, models_dir=tmp_path / "models")
    message = str(err.value)
    assert "IDEA-Research/grounding-dino-tiny" in message
    assert "`grounded-sam download grounding_dino_tiny`" in message
    assert str(tmp_path / "models" / "grounding-dino-tiny") in message
    assert err.value.name == "grounding_dino_tiny"


def test_unknown_hub_id_without_local_copy(empty_hf_cache):
    with pytest.raises(MissingCheckpointError, match="no local copy of Grounding DINO model"):
        GroundingDinoDetector.from_pretrained("someone/grounding-dino-finetuned")


@pytest.mark.parametrize("name", ["grounding_dino_tiny", "IDEA-Research/grounding-dino-tiny"])
def test_registry_name_and_hub_id_load_from_the_models_folder(tmp_path, empty_hf_cache, name):
    # where `grounded-sam download grounding_dino_tiny` puts the files
    save_tiny_grounding_dino(tmp_path / "models" / "grounding-dino-tiny", seed=1)
    det = GroundingDinoDetector.from_pretrained(name, models_dir=tmp_path / "models")
    assert len(det.detect(random_image(30, 40), "cat . dog")) > 0


def test_incomplete_models_folder_lists_missing_files(tmp_path, monkeypatch):
    folder = save_tiny_grounding_dino(tmp_path / "grounding-dino-tiny")
    (folder / "config.json").unlink()
    monkeypatch.setenv("GROUNDED_SAM_MODELS", str(tmp_path))
    with pytest.raises(MissingCheckpointError, match=r"lacks: model config \(config.json\)"):
        GroundingDinoDetector.from_pretrained("grounding_dino_tiny")


def test_import_does_not_load_torch():
    import subprocess
    import sys

    code = (
        "import sys, grounded_sam.detectors.grounding_dino; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------- original checkpoints


def test_from_original_detects_what_the_original_code_detects(tmp_path):
    """An original .pth through our detector (processor, model, post-processing) against the
    original code (rf-groundingdino) on the same pixels: same boxes, same scores."""
    from _groundingdino_reference import tiny_original
    from transformers import GroundingDinoImageProcessor

    from grounded_sam.models.grounding_dino_text import original_processor

    original, checkpoint, text_encoder = tiny_original()
    loaded = GroundingDinoDetector.from_original(checkpoint, text_encoder=text_encoder)
    assert loaded.processor.image_processor.size["shortest_edge"] == 800
    small = GroundingDinoImageProcessor(size={"shortest_edge": 96, "longest_edge": 160})
    processor = original_processor(loaded.processor.tokenizer, small)
    image = random_image(75, 120, seed=5)
    prompt = Prompt.from_classes(["cat", "traffic light", "dog"])
    pixels = processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        ref = original(pixels, captions=[prompt.text])
    scores = ref["pred_logits"][0].sigmoid().amax(-1).sort().values
    threshold = float(scores[len(scores) // 2 - 1] + scores[len(scores) // 2]) / 2
    det = GroundingDinoDetector(loaded.model, processor, box_threshold=threshold)
    ours = det.detect(image, prompt.classes)

    keep = ref["pred_logits"][0].sigmoid().amax(-1) > threshold
    cx, cy, w, h = ref["pred_boxes"][0][keep].unbind(-1)
    xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
    xyxy = (xyxy * torch.tensor([120, 75, 120, 75])).clamp(min=0)
    xyxy = torch.minimum(xyxy, torch.tensor([120, 75, 120, 75])).numpy()
    ref_scores = ref["pred_logits"][0].sigmoid().amax(-1)[keep].numpy()
    assert len(ours) == int(keep.sum()) > 0
    order, ref_order = np.argsort(-ours.scores), np.argsort(-ref_scores)
    np.testing.assert_allclose(ours.scores[order], ref_scores[ref_order], atol=1e-4)
    np.testing.assert_allclose(ours.xyxy[order], xyxy[ref_order], atol=1e-2)  # pixels


def test_from_pretrained_takes_an_original_file_or_registry_name(tmp_path):
    import shutil

    from _groundingdino_reference import tiny_original

    from grounded_sam.models.grounding_dino_text import TOKENIZER_FOLDER

    _, checkpoint, text_encoder = tiny_original()
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(checkpoint, models / "groundingdino_swint_ogc.pth")
    shutil.copytree(text_encoder, models / TOKENIZER_FOLDER)
    by_file = GroundingDinoDetector.from_pretrained(models / "groundingdino_swint_ogc.pth")
    by_name = GroundingDinoDetector.from_pretrained("groundingdino-swint-ogc", models_dir=models)
    for a, b in zip(by_file.model.parameters(), by_name.model.parameters(), strict=True):
        assert torch.equal(a, b)
