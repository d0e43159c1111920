"""SAM's image encoder compiled by OpenVINO: an opt-in encoder for CPUs without bf16 kernels.

On CPUs with AMX / AVX512-BF16 our own encoder (``fast_sam.optimize_sam``, bf16 with fused
oneDNN linears) is the fastest we measured. On CPUs without bf16 kernels (AVX2-only AMD EPYC,
older Intel) it runs in fp32, and there OpenVINO's whole-graph compilation of the same
encoder with static 1024x1024 shapes was reported faster (issue 11: 10.0 s against our
14.2 s on an AVX2 EPYC; benchmarks/bench_encoder_runtimes.py measures it side by side), at
fp32 precision: the embedding is the reference's up to float rounding (rel. L2 ~1e-6). It is
an opt-in (``SamSegmenter(fast=True, encoder_runtime="openvino")``), not the default, until
it is measured on such a CPU here: an AMX machine capped at AVX2 (``ONEDNN_MAX_CPU_ISA``)
cannot stand in, since OpenVINO's CPU plugin then finds no Softmax kernel at all.

OpenVINO is optional (``pip install "grounded-sam[openvino]"``). The price is a one-time
conversion of the PyTorch encoder to OpenVINO's graph (seconds to a minute for vit_b on 2
cores), paid once per process and model; the converted graph is kept on disk under
``<models>/cache/openvino/`` keyed by a hash of the encoder's weights and the input size,
so a later process only compiles it (a few seconds). Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["OpenVinoImageEncoder", "openvino_available", "openvino_encoder_for", "weights_key"]


def openvino_available() -> bool:
    """True when the ``openvino`` package can be imported (checked without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def weights_key(module: nn.Module, input_size: int) -> str:
    """A hex digest of ``module``'s state dict (names, shapes, dtypes, bytes) and the input size."""
    import torch

    h = hashlib.sha256(f"input {input_size}".encode())
    for name, tensor in module.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name} {tuple(t.shape)} {t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:24]


class OpenVinoImageEncoder:
    """A callable equal to ``encoder(x)`` for x float32 (1, 3, S, S) -> float32 (1, C, S/16, S/16).

    Args:
        encoder: segment_anything's ``ImageEncoderViT`` (any size), in float32. It is read
            once, to convert it; it is not changed.
        cache_dir: where converted graphs are kept (None: converted every time, in memory).
        threads: OpenVINO's inference threads (None: torch's current count).
        precision: OpenVINO's ``INFERENCE_PRECISION_HINT``; "f32" (the default) keeps the
            reference's arithmetic; None lets OpenVINO pick for the CPU (bf16 on AMX).

    Thread-safe: each call takes its own infer request from the compiled model.
    """

    def __init__(
        self,
        encoder: nn.Module,
        *,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
        precision: str | None = "f32",
    ):
        import torch

        if not openvino_available():
            raise RuntimeError(
                "the OpenVINO encoder needs the openvino package: "
                'pip install "grounded-sam[openvino]" (or pass fast=False / '
                'encoder_runtime="torch")'
            )
        self.input_size = int(getattr(encoder, "img_size", 1024))
        self.threads = int(threads or torch.get_num_threads())
        self.precision = precision
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.from_cache = False
        self._compiled = self._compile(self._model(encoder))

    def _model(self, encoder: nn.Module) -> Any:
        """The OpenVINO graph of ``encoder``: read from the cache, or converted (and saved)."""
        import openvino as ov
        import torch

        size = self.input_size
        path = None
        if self.cache_dir is not None:
            key = f"{weights_key(encoder, size)}-ov{ov.__version__.split('-')[0]}"
            path = self.cache_dir / f"sam_encoder_{key}.xml"
            if path.is_file() and path.with_suffix(".bin").is_file():
                self.from_cache = True
                return ov.Core().read_model(str(path))
        example = torch.zeros(1, 3, size, size)
        with torch.no_grad():
            model = ov.convert_model(
                encoder.eval(), example_input=example, input=[(1, 3, size, size)]
            )
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.tmp.xml")
            ov.save_model(model, str(tmp), compress_to_fp16=False)
            tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
            tmp.replace(path)
        return model

    def _compile(self, model: Any) -> Any:
        import openvino as ov

        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": self.threads,
        }
        if self.precision:
            config["INFERENCE_PRECISION_HINT"] = self.precision
        try:
            return ov.Core().compile_model(model, "CPU", config)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise RuntimeError(
                f"OpenVINO could not compile SAM's image encoder on this CPU ({first}); "
                'use encoder_runtime="torch"'
            ) from exc

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x float32 (1, 3, S, S), SAM-normalised and padded -> features float32 (1, C, h, w)."""
        import torch

        size = self.input_size
        if tuple(x.shape) != (1, 3, size, size):
            raise ValueError(
                f"the OpenVINO encoder takes one padded image (1, 3, {size}, {size}), "
                f"got {tuple(x.shape)}"
            )
        request = self._compiled.create_infer_request()
        result = request.infer({0: x.detach().to("cpu", torch.float32).numpy()})
        return torch.from_numpy(next(iter(result.values())).copy())


def openvino_encoder_for(encoder: nn.Module) -> OpenVinoImageEncoder:
    """The OpenVINO encoder of ``encoder`` in fp32, its graph cached under the models folder
    (``<GROUNDED_SAM_MODELS or ./models>/cache/openvino``)."""
    from grounded_sam.models.registry import models_dir

    return OpenVinoImageEncoder(encoder, cache_dir=models_dir() / "cache" / "openvino")
