"""optimize_sam: the fast SAM image encoder equals segment_anything's, on tiny random SAMs.

grounded_sam.runtime, which the fast encoder reads on every forward, has its own tests in
tests/test_runtime.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.modeling.image_encoder import Attention, Block, ImageEncoderViT

from grounded_sam import runtime
from grounded_sam.segmenters import fast_sam
from grounded_sam.segmenters.fast_sam import is_optimized, optimize_sam, restore_sam
from grounded_sam.testing.sam import tiny_sam

pytestmark = pytest.mark.cpu_kind  # run again under an AVX2 cap (scripts/test.sh)

torch.set_num_threads(2)


def _sam(seed: int = 0, **config):
    """A tiny SAM whose position embeddings are large enough that a wrong relative-position
    bias would show (tiny_sam's defaults are std 0.02)."""
    sam = tiny_sam(seed, **config)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for name, p in sam.image_encoder.named_parameters():
            if "rel_pos" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return sam


def _image(batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 1024, 1024, generator=g)


def _encode(sam, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return sam.image_encoder(x)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def _max_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize("window_size", [4, 6])  # 64 % 6 != 0: padded windows
def test_fp32_equals_reference_windowed_and_global(window_size):
    sam = _sam(window_size=window_size, depth=3, global_attn_indexes=(1,))
    x = _image()
    ref = _encode(sam, x)
    optimize_sam(sam, dtype="fp32")
    out = _encode(sam, x)
    assert out.shape == ref.shape == (1, 32, 64, 64)
    assert out.dtype == torch.float32 and out.is_contiguous()
    assert _max_rel(out, ref) < 1e-5


_FORMS = {
    "as used": None,
    "folded": lambda attn, q, k, v, size: fast_sam._attend_folded(attn, q, k, v, size),
    "masked": lambda attn, q, k, v, size: fast_sam._attend_masked(attn, q, k, v, size),
    # 77 does not divide 480 queries
    "masked, query chunks": lambda attn, q, k, v, size: fast_sam._attend_masked(
        attn, q, k, v, size, 77
    ),
}


@pytest.mark.parametrize("form", list(_FORMS))
def test_global_attention_forms_equal_reference(form, monkeypatch):
    """Both ways of applying the relative-position bias (folded into q.k, or as a mask,
    whole or query chunk by chunk) equal SAM's Attention on a non-square grid."""
    torch.manual_seed(0)
    attn = Attention(32, num_heads=2, use_rel_pos=True, input_size=(20, 24)).eval()
    with torch.no_grad():
        attn.rel_pos_h.normal_(0, 0.5)
        attn.rel_pos_w.normal_(0, 0.5)
    x = torch.randn(2, 20, 24, 32)
    with torch.inference_mode():
        ref = attn(x)
    if _FORMS[form] is not None:
        monkeypatch.setattr(fast_sam, "_attend", _FORMS[form])
    attn.__class__ = fast_sam._FastAttention
    with torch.inference_mode():
        out = attn(x)
    assert _max_rel(out, ref) < 1e-5


def test_each_block_kind_equals_reference_in_fp32():
    """Window and global blocks compared one at a time on the same input tokens."""
    sam = _sam(window_size=6, depth=2, global_attn_indexes=(1,))
    blocks = sam.image_encoder.blocks
    assert blocks[0].window_size == 6 and blocks[1].window_size == 0
    tokens = torch.randn(2, 64, 64, 32, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        refs = [blk(tokens) for blk in blocks]
        optimize_sam(sam, dtype=torch.float32)
        outs = [blk(tokens) for blk in blocks]
    for out, ref in zip(outs, refs, strict=True):
        assert _max_rel(out, ref) < 1e-5


def test_batch_of_two_images_matches_one_by_one():
    sam = _sam(window_size=6)
    x = _image(batch=2, seed=1)
    ref = _encode(sam, x)
    optimize_sam(sam, dtype="fp32")
    out = _encode(sam, x)
    assert _max_rel(out, ref) < 1e-5
    assert _max_rel(_encode(sam, x[1:]), ref[1:]) < 1e-5


def test_weights_shared_state_dict_unchanged_idempotent_and_restorable():
    sam = _sam(window_size=6)
    x = _image()
    ref = _encode(sam, x)
    before = sam.state_dict()
    ptrs = {k: v.data_ptr() for k, v in before.items()}

    assert optimize_sam(sam, dtype="fp32") is sam
    assert is_optimized(sam)
    after = sam.state_dict()
    assert list(after) == list(before)
    assert {k: v.data_ptr() for k, v in after.items()} == ptrs  # the same tensors, no copies
    assert all(
        isinstance(b, Block) and isinstance(b.attn, Attention) for b in sam.image_encoder.blocks
    )
    out1 = _encode(sam, x)

    assert optimize_sam(sam, dtype="fp32") is sam  # second call: nothing more changes
    assert list(sam.state_dict()) == list(before)
    assert torch.equal(_encode(sam, x), out1)

    # a checkpoint still loads strictly into the optimised module, and vice versa
    sam.load_state_dict(before, strict=True)
    fresh = _sam(seed=1, window_size=6)
    fresh.load_state_dict(sam.state_dict(), strict=True)
    assert _max_rel(_encode(fresh, x), ref) == 0.0

    assert restore_sam(sam) is sam
    assert not is_optimized(sam)
    assert type(sam.image_encoder) is ImageEncoderViT
    assert type(sam.image_encoder.blocks[0]) is Block
    assert torch.equal(_encode(sam, x), ref)


def test_accepts_the_encoder_itself_and_leaves_other_backbones_alone():
    sam = _sam()
    assert optimize_sam(sam.image_encoder, dtype="fp32") is sam.image_encoder
    assert is_optimized(sam)
    other = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1))
    assert optimize_sam(other) is other
    assert type(other[0]) is torch.nn.Conv2d
    with pytest.raises(TypeError, match="Sam or its ImageEncoderViT"):
        optimize_sam("not a model")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dtype"):
        optimize_sam(sam, dtype="int8")


def test_bf16_within_two_percent_and_returns_float32():
    sam = _sam(window_size=6)
    x = _image()
    ref = _encode(sam, x)
    optimize_sam(sam, dtype="bf16")
    out = _encode(sam, x)
    assert out.dtype == torch.float32
    err = _rel_err(out, ref)
    assert 0 < err < 2e-2  # really ran in reduced precision, and close


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_gradients_flow_like_the_reference(dtype):
    """Fine-tuning works through the optimised encoder (autograd on: no fused oneDNN ops)."""
    sam = _sam(window_size=6)
    x = _image()
    # a fixed random projection: mean(y**2) of a LayerNorm output is ~1 whatever the input,
    # and its gradients would be rounding noise
    probe = torch.randn(1, 32, 64, 64, generator=torch.Generator().manual_seed(5))
    weights = [sam.image_encoder.blocks[i].attn.rel_pos_h for i in (0, 1)]
    weights.append(sam.image_encoder.patch_embed.proj.weight)

    def grad() -> torch.Tensor:
        sam.zero_grad()
        (sam.image_encoder(x) * probe).sum().backward()
        return torch.cat([w.grad.flatten() for w in weights])

    ref = grad()
    optimize_sam(sam, dtype=dtype)
    got = grad()
    assert _rel_err(got, ref) < (1e-4 if dtype == "fp32" else 3e-2)


def test_half_precision_weights():
    """An encoder converted to bf16 runs in bf16, or upcast when fp32 is asked for."""
    sam = _sam(window_size=6)
    x = _image()
    ref = _encode(sam, x)
    sam.image_encoder.to(torch.bfloat16)
    optimize_sam(sam, dtype="bf16")
    out = _encode(sam, x)
    assert out.dtype == torch.bfloat16 and _rel_err(out, ref) < 3e-2
    optimize_sam(sam, dtype="fp32")  # computes on fp32 copies of the bf16 weights
    out32 = _encode(sam, x)
    assert out32.dtype == torch.bfloat16
    assert _rel_err(out32, ref) < _rel_err(out, ref)  # only the weights were rounded
    assert next(sam.image_encoder.parameters()).dtype == torch.bfloat16


def test_force_fp32_env_is_read_at_call_time(monkeypatch):
    sam = _sam(window_size=6)
    x = _image()
    ref = _encode(sam, x)
    optimize_sam(sam, dtype=torch.bfloat16)
    monkeypatch.setenv(runtime.FORCE_FP32_ENV, "1")
    assert _max_rel(_encode(sam, x), ref) < 1e-5
    monkeypatch.setenv(runtime.FORCE_FP32_ENV, "0")
    assert _rel_err(_encode(sam, x), ref) > 1e-4  # bf16 again, without re-optimising


def test_auto_dtype_follows_the_cpu():
    sam = _sam()
    x = _image()
    ref = _encode(sam, x)
    optimize_sam(sam)  # dtype=None: bf16 where this CPU has it in hardware, else fp32
    err = _rel_err(_encode(sam, x), ref)
    if runtime.cpu_has_fast_bf16():
        assert 0 < err < 2e-2
    else:
        assert err < 1e-5


def _predictor_masks(sam, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    masks, scores = [], []
    for box in boxes:
        m, s, _ = predictor.predict(box=box, multimask_output=False)
        masks.append(m[0])
        scores.append(s[0])
    return np.stack(masks), np.array(scores)


def test_sam_predictor_masks_identical_in_fp32_and_close_in_bf16():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    boxes = np.array([[10, 20, 200, 150], [150, 100, 390, 290], [0, 0, 399, 299]], np.float32)
    sam = _sam(window_size=6)
    ref_masks, ref_scores = _predictor_masks(sam, image, boxes)
    assert ref_masks.any()  # the comparison is not between two empty masks

    optimize_sam(sam, dtype="fp32")
    masks, scores = _predictor_masks(sam, image, boxes)
    differing = int((masks != ref_masks).sum())
    assert differing <= 2, f"{differing} of {ref_masks.size} mask pixels differ in fp32"
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-5)

    optimize_sam(sam, dtype="bf16")
    masks, _ = _predictor_masks(sam, image, boxes)
    inter = (masks & ref_masks).sum((1, 2))
    union = (masks | ref_masks).sum((1, 2))
    assert (inter / np.maximum(union, 1)).min() > 0.95


def _ops_run(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


@pytest.mark.skipif(
    not runtime.onednn_bf16_kernels(),
    reason=f"needs oneDNN bf16 kernels (AMX or AVX512-BF16); {runtime.missing_bf16_reason()}",
)
def test_bf16_linears_are_fused_oneDNN_gemms_where_the_cpu_has_bf16_kernels():
    sam = _sam(window_size=6)
    optimize_sam(sam, dtype="bf16")
    assert "mkldnn::_linear_pointwise" in _ops_run(lambda: _encode(sam, _image()))


def test_bf16_without_bf16_kernels_never_reaches_a_fused_oneDNN_gemm():
    """On AVX2-only CPUs (or under ONEDNN_MAX_CPU_ISA=AVX2) bf16 runs autocast's generic
    kernels: no fused oneDNN bf16 linear, which would die there with "could not create a
    primitive descriptor". In fp32 the fused op runs only where fp32_linear chose oneDNN
    (in float32: GROUNDED_SAM_FP32_LINEAR=onednn, or a CPU where MKL's sgemm is slower)."""
    from grounded_sam import fp32_linear

    sam = _sam(window_size=6)
    optimize_sam(sam, dtype="fp32")
    fused = "mkldnn::_linear_pointwise" in _ops_run(lambda: _encode(sam, _image()))
    assert fused == (fp32_linear.backend() == "onednn")
    optimize_sam(sam, dtype="bf16")
    fused = "mkldnn::_linear_pointwise" in _ops_run(lambda: _encode(sam, _image()))
    assert fused == runtime.onednn_bf16_kernels()
