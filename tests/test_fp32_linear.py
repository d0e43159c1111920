"""fp32_linear: MKL or oneDNN for the fast paths' float32 linears, measured or fixed by env."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from grounded_sam import fp32_linear, runtime

pytestmark = [
    pytest.mark.cpu_kind,  # run again under an AVX2 cap (scripts/test.sh)
    pytest.mark.skipif(runtime.mkldnn_linear_op() is None, reason="torch built without oneDNN"),
]


@pytest.fixture
def fixed(monkeypatch):
    """Set GROUNDED_SAM_FP32_LINEAR for one test (the process-wide choice is cached)."""

    def fix(value: str | None):
        if value is None:
            monkeypatch.delenv(fp32_linear.FP32_LINEAR_ENV, raising=False)
        else:
            monkeypatch.setenv(fp32_linear.FP32_LINEAR_ENV, value)
        fp32_linear._decision.cache_clear()

    yield fix
    fp32_linear._decision.cache_clear()


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(str(func))
        return func(*args, **(kwargs or {}))


def _case(shape=(2, 5, 7, 48), out=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    w = torch.randn(out, shape[-1], generator=g) * 0.2
    b = torch.randn(out, generator=g)
    return x, w, b


@pytest.mark.parametrize("backend", ["aten", "onednn"])
@pytest.mark.parametrize("act", [None, "gelu", "relu"])
def test_both_backends_give_the_float32_linear(fixed, backend, act):
    fixed(backend)
    x, w, b = _case()
    ref = F.linear(x, w, b)
    ref = {None: ref, "gelu": F.gelu(ref), "relu": F.relu(ref)}[act]
    with torch.inference_mode(), _Ops() as ops:
        y = fp32_linear.linear(x, w, b, act)
    assert y.dtype == torch.float32 and y.shape == ref.shape
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    onednn = any("mkldnn._linear_pointwise" in n for n in ops.names)
    assert onednn == (backend == "onednn"), ops.names


def test_no_bias_and_a_strided_input(fixed):
    fixed("onednn")
    x, w, _ = _case((6, 40), out=24)
    x = x.t().contiguous().t()  # same values, transposed strides
    with torch.inference_mode():
        torch.testing.assert_close(
            fp32_linear.linear(x, w, None), F.linear(x, w), rtol=1e-5, atol=1e-5
        )


def test_other_dtypes_autocast_and_autograd_keep_aten(fixed):
    fixed("onednn")
    x, w, b = _case()
    with torch.inference_mode(), _Ops() as ops:
        fp32_linear.linear(x.double(), w.double(), b.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = fp32_linear.linear(x, w, b)
    assert y.dtype == torch.bfloat16  # autocast's choice, not a float32 oneDNN GEMM
    assert not any("mkldnn._linear_pointwise" in n for n in ops.names)
    w.requires_grad_(True)
    fp32_linear.linear(x, w, b).sum().backward()  # the differentiable path
    assert w.grad is not None


def test_choice_rule():
    assert fp32_linear.choose({"aten": 1.0}) == "aten"
    assert fp32_linear.choose({"aten": 1.0, "onednn": 0.9}) == "aten"  # a tie keeps MKL
    at = 1.0 / fp32_linear.PREFER_ONEDNN_AT
    assert fp32_linear.choose({"aten": 1.0, "onednn": at}) == "onednn"
    assert fp32_linear.choose({"aten": 1.0, "onednn": 0.3}) == "onednn"


def test_unset_env_measures_once_and_names_a_backend(fixed):
    fixed(None)
    times = fp32_linear.probe(rows=64, rounds=1)
    assert set(times) == {"aten", "onednn"} and all(0 < t < 10 for t in times.values())
    first = fp32_linear.backend()
    assert first in fp32_linear.BACKENDS
    assert fp32_linear.backend() is first  # cached for the process
    assert fp32_linear.describe().startswith("fp32 linears: ")
    assert "probe: oneDNN" in fp32_linear.describe()


def test_bad_env_says_what_to_set(fixed):
    fixed("onednn")
    assert fp32_linear.describe() == ("fp32 linears: oneDNN (set by GROUNDED_SAM_FP32_LINEAR)")
    fixed("mkl")
    with pytest.raises(ValueError, match="GROUNDED_SAM_FP32_LINEAR must be one of aten, onednn"):
        fp32_linear.backend()
    with pytest.raises(ValueError, match="act must be"):
        fp32_linear.linear(*_case(), act="silu")
