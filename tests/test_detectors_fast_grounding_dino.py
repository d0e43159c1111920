"""optimize_grounding_dino: same outputs as transformers in fp32, close in bf16 (tiny model)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers.models.grounding_dino.modeling_grounding_dino import (
    MultiScaleDeformableAttention,
)

from grounded_sam.detectors.fast_grounding_dino import (
    deformable_attention,
    is_optimized,
    optimize_grounding_dino,
)
from grounded_sam.detectors.grounding_dino import GroundingDinoDetector
from grounded_sam.detectors.phrases import Prompt, PromptTokens
from grounded_sam.testing.grounding_dino import tiny_grounding_dino

pytestmark = pytest.mark.cpu_kind  # run again under an AVX2 cap (scripts/test.sh)

PROMPT = "cat . dog . traffic light"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.set_num_threads(2)
    return tiny_grounding_dino(tmp_path_factory.mktemp("vocab"), seed=3)


@pytest.fixture(scope="module")
def inputs(tiny):
    model, processor = tiny
    det = GroundingDinoDetector(model, processor)
    image = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    pixels, _ = det.preprocess_image(image)
    tokens = PromptTokens.from_tokenizer(processor.tokenizer, Prompt.from_classes(PROMPT))
    input_ids = torch.as_tensor(tokens.input_ids)[None]
    return {
        **pixels,
        "input_ids": input_ids,
        "token_type_ids": torch.zeros_like(input_ids),
        "attention_mask": torch.ones_like(input_ids),
    }


def _run(model, inputs):
    """(logits over the prompt's tokens (1, Q, T), boxes (1, Q, 4)); later columns are -inf."""
    with torch.inference_mode():
        out = model(**inputs)
    t = inputs["input_ids"].shape[1]
    return out.logits[..., :t].float(), out.pred_boxes.float()


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("batch", [1, 2])
def test_deformable_attention_matches_transformers_kernel(batch):
    g = torch.Generator().manual_seed(batch)
    shapes = [(9, 13), (5, 7), (3, 4), (1, 2)]
    s = sum(h * w for h, w in shapes)
    heads, d, points, q = 4, 8, 3, 50
    value = torch.randn(batch, s, heads, d, generator=g)
    # locations a little outside [0, 1] too: those corners read zeros
    loc = torch.rand(batch, q, heads, len(shapes), points, 2, generator=g) * 1.4 - 0.2
    weights = torch.rand(batch, q, heads, len(shapes), points, generator=g)
    st = torch.tensor(shapes)
    start = torch.cat([st.new_zeros(1), (st[:, 0] * st[:, 1]).cumsum(0)[:-1]])
    ref = MultiScaleDeformableAttention()(value, st, shapes, start, loc, weights, 64)
    ours = deformable_attention(value, shapes, loc, weights, query_chunk=7)
    assert ours.shape == ref.shape == (batch, q, heads * d)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_kernel_keeps_transformers_grid_sample_off_the_cpu():
    """On CPUs the kernel gathers with embedding_bag; on other devices (GPUs, where
    grid_sample is fast) it runs transformers' own: seen here through the ops dispatched
    for CPU and for meta tensors."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from grounded_sam.detectors.fast_grounding_dino import _FastMSDAKernel

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.add(func.__name__.split(".")[0])
            return func(*args, **(kwargs or {}))

    shapes = [(4, 5), (2, 3)]
    st = torch.tensor(shapes)
    start = torch.tensor([0, 20])
    seen = {}
    for device in ("cpu", "meta"):
        g = torch.Generator().manual_seed(0)
        value = torch.randn(1, 26, 2, 4, generator=g).to(device)
        loc = torch.rand(1, 7, 2, 2, 3, 2, generator=g).to(device)
        weights = torch.rand(1, 7, 2, 2, 3, generator=g).to(device)
        with Ops() as ops:
            out = _FastMSDAKernel()(value, st.to(device), shapes, start.to(device), loc, weights)
        assert out.shape == (1, 7, 8)
        seen[device] = ops.names
    assert any("embedding_bag" in n for n in seen["cpu"])
    assert not any("grid_sampler" in n for n in seen["cpu"])
    assert any("grid_sampler" in n for n in seen["meta"])
    assert not any("embedding_bag" in n for n in seen["meta"])


def test_fp32_path_equals_reference(tiny, inputs):
    model, _ = tiny
    ref = _run(model, inputs)
    fast = optimize_grounding_dino(copy.deepcopy(model), dtype="fp32")
    assert is_optimized(fast) and not is_optimized(model)
    logits, boxes = _run(fast, inputs)
    torch.testing.assert_close(logits, ref[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(boxes, ref[1], rtol=1e-5, atol=1e-5)


def test_encoder_relu_is_in_place_only_without_autograd(tiny):
    from transformers.models.grounding_dino import modeling_grounding_dino as gd

    fast = optimize_grounding_dino(copy.deepcopy(tiny[0]), dtype="fp32")
    layers = [m for m in fast.modules() if isinstance(m, gd.GroundingDinoDeformableLayer)]
    assert layers
    relu = layers[0].activation_fn
    x = torch.tensor([-1.0, 2.0, -3.0])
    with torch.inference_mode():
        y = x.clone()
        assert relu(y) is y and y.tolist() == [0.0, 2.0, 0.0]
    x.requires_grad_(True)
    y = relu(x)
    assert y is not x and x.tolist() == [-1.0, 2.0, -3.0]


def test_state_dict_unchanged_and_idempotent(tiny):
    model, _ = tiny
    fast = copy.deepcopy(model)
    before = {k: v.clone() for k, v in fast.state_dict().items()}
    assert optimize_grounding_dino(fast, dtype="fp32") is fast
    cls = type(fast)
    optimize_grounding_dino(fast, dtype="bf16")  # again: only the dtype changes
    assert type(fast) is cls and fast._gs_dtype == "bf16"
    after = fast.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        assert torch.equal(after[key], value), key
    # a state_dict saved from the reference loads strictly into the optimised model
    fast.load_state_dict(model.state_dict(), strict=True)


def test_bf16_path_runs_and_is_close(tiny, inputs):
    model, _ = tiny
    ref_logits, ref_boxes = _run(model, inputs)
    fast = optimize_grounding_dino(copy.deepcopy(model), dtype="bf16")
    logits, boxes = _run(fast, inputs)
    assert logits.dtype == boxes.dtype == torch.float32  # outputs back in the weights' dtype
    assert logits.shape == ref_logits.shape and boxes.shape == ref_boxes.shape
    assert torch.isfinite(logits).all() and torch.isfinite(boxes).all()
    # Two-stage query selection may pick near-tied proposals in another order under bf16
    # (the tiny random model has many identical proposals): match each reference query to
    # the bf16 query closest in (box, logits), then compare the matched outputs.
    scale = ref_logits.abs().max()
    ref_feat = torch.cat([ref_boxes[0], ref_logits[0] / scale], 1)
    feat = torch.cat([boxes[0], logits[0] / scale], 1)
    dist, nearest = torch.cdist(ref_feat, feat, p=1).min(1)
    found = dist < 0.05  # the rest were displaced from the top-k by near-ties
    assert found.float().mean() >= 0.7
    assert _rel(boxes[0, nearest][found], ref_boxes[0][found]) < 0.01
    assert _rel(logits[0, nearest][found], ref_logits[0][found]) < 0.02


def test_force_fp32_env_makes_bf16_setting_exact(tiny, inputs, monkeypatch):
    model, _ = tiny
    ref = _run(model, inputs)
    fast = optimize_grounding_dino(copy.deepcopy(model), dtype="bf16")
    monkeypatch.setenv("GROUNDED_SAM_FORCE_FP32", "1")
    logits, boxes = _run(fast, inputs)
    torch.testing.assert_close(logits, ref[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(boxes, ref[1], rtol=1e-5, atol=1e-5)


def test_detector_fast_option_gives_same_detections_in_fp32(tiny):
    model, processor = tiny
    image = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    ref = GroundingDinoDetector(copy.deepcopy(model), processor, box_threshold=0.0)
    fast = GroundingDinoDetector(
        copy.deepcopy(model), processor, box_threshold=0.0, fast=True, fast_dtype="fp32"
    )
    a, b = ref.detect(image, PROMPT), fast.detect(image, PROMPT)
    assert is_optimized(fast.model) and not is_optimized(ref.model)
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(b.xyxy, a.xyxy, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(b.scores, a.scores, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(b.class_id, a.class_id)


def test_rejects_other_models_and_bad_dtype(tiny):
    model, _ = tiny
    with pytest.raises(TypeError, match="GroundingDinoForObjectDetection"):
        optimize_grounding_dino(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="dtype"):
        optimize_grounding_dino(copy.deepcopy(model), dtype="int8")
