"""The ORIGINAL Grounding DINO (IDEA-Research's code, PyPI ``rf-groundingdino``) at test size.

Used only by the equivalence tests of :mod:`grounded_sam.models.grounding_dino_original`.
The original code is imported as it is, with three test-only adjustments, none of which
touches its detection arithmetic:

- ``BertModelWarper`` calls ``BertModel.get_extended_attention_mask`` and passes
  transformers-4 keyword arguments to BERT's embeddings and encoder; both are gone in
  transformers 5. :class:`BertWarperShim` keeps the warper's sub-modules (so the state dict's
  ``bert.*`` keys are the original's) and computes what transformers 4 computed: the
  (B, T, T) 0/1 sub-sentence mask becomes an additive (B, 1, T, T) mask of 0 and the dtype's
  minimum, then embeddings (with the original position ids) and the encoder layers.
- The Swin backbone's size comes from a table keyed by name (``swin_T_224_1k`` …);
  :func:`original_grounding_dino` passes small ``embed_dim``/``depths``/``num_heads``/
  ``window_size`` through the builder's own ``**kw`` so the key structure stays Swin's.
- BERT and its tokenizer are read from a local folder (``text_encoder_type`` may be a
  directory in the original code), never fetched.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import runpy
import shutil
import tempfile
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Swin settings of the test-size original; the real ones are in swin_transformer.py's table.
TINY_SWIN = dict(embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 2], window_size=4)
# Transformer settings of the test-size original (the real config file gives the rest).
TINY_ARGS = dict(
    hidden_dim=256,  # the original hard-codes 256 for the text position embedding
    nheads=8,  # heads and points as in the official configs: inferred, not passed
    enc_layers=1,
    dec_layers=2,
    dim_feedforward=64,
    num_queries=30,
    enc_n_points=4,
    dec_n_points=4,
    use_checkpoint=False,
    use_transformer_ckpt=False,
    fusion_droppath=0.0,
)
# 64 channels per head, as bert-base-uncased: the head count is inferred, not passed.
TINY_BERT = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=1, intermediate_size=80)


def reference_module() -> Any:
    """``groundingdino`` (the original package) or a test failure saying how to install it."""
    try:
        import groundingdino.models  # noqa: F401
    except ImportError as exc:  # never a silent skip: the equivalence proof needs it
        pytest.fail(
            f"the original Grounding DINO code is not importable ({exc}); install it with "
            "`pip install --no-deps rf-groundingdino==0.3.0 addict yapf matplotlib` "
            "(scripts/test.sh does)"
        )
    import groundingdino

    return groundingdino


def config_args(name: str, **overrides: Any) -> Namespace:
    """The original config file ``name`` (``GroundingDINO_SwinT_OGC.py`` …) as build args."""
    pkg = reference_module()
    path = Path(pkg.__file__).parent / "config" / name
    values = {k: v for k, v in runpy.run_path(str(path)).items() if not k.startswith("__")}
    values.update(device="cpu", **overrides)
    return Namespace(**values)


class BertWarperShim:
    """Built lazily so ``torch``/``transformers`` are imported only by the tests that run it."""

    @staticmethod
    def make() -> type:
        import torch
        from torch import nn

        class _Shim(nn.Module):
            def __init__(self, bert_model: Any):
                super().__init__()
                self.config = bert_model.config
                self.embeddings = bert_model.embeddings
                self.encoder = bert_model.encoder
                self.pooler = bert_model.pooler

            def forward(
                self, input_ids, attention_mask, token_type_ids=None, position_ids=None
            ) -> dict[str, Any]:
                hidden = self.embeddings(
                    input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids
                )
                # transformers 4's get_extended_attention_mask for a 3-D mask
                extended = attention_mask[:, None, :, :].to(hidden.dtype)
                extended = (1.0 - extended) * torch.finfo(hidden.dtype).min
                out = self.encoder(hidden, attention_mask=extended)
                return {"last_hidden_state": out.last_hidden_state}

        return _Shim


@contextlib.contextmanager
def _original_builders(swin: dict[str, Any]) -> Iterator[None]:
    """Patch the warper and the Swin size into the original modules while building."""
    reference_module()
    from groundingdino.models.GroundingDINO import groundingdino as gd
    from groundingdino.models.GroundingDINO.backbone import backbone as backbone_mod

    original_swin = backbone_mod.build_swin_transformer

    def small_swin(modelname: str, pretrain_img_size: int, **kw: Any) -> Any:
        return original_swin(modelname, pretrain_img_size, **{**kw, **swin})

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gd, "BertModelWarper", BertWarperShim.make())
        mp.setattr(backbone_mod, "build_swin_transformer", small_swin)
        yield


def write_text_encoder(directory: Path, seed: int, **bert: Any) -> Path:
    """A random BERT (``save_pretrained``) and the tiny test vocabulary, in ``directory``."""
    import torch
    from transformers import BertConfig, BertModel

    from grounded_sam.testing.grounding_dino import tiny_grounding_dino_processor

    processor = tiny_grounding_dino_processor(directory)
    config = BertConfig(vocab_size=len(processor.tokenizer), max_position_embeddings=256, **bert)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        BertModel(config).save_pretrained(directory)
    processor.tokenizer.save_pretrained(directory)
    return directory


def original_grounding_dino(
    config: str, text_encoder_dir: Path, *, swin: dict[str, Any] | None = None, **args: Any
) -> Any:
    """The original ``GroundingDINO`` module, built from config file ``config`` with ``args``
    overriding it and ``swin`` overriding the Swin size table; eval mode, CPU, fp32."""
    reference_module()
    from groundingdino.models import build_model

    build_args = config_args(config, text_encoder_type=str(text_encoder_dir), **args)
    with _original_builders(swin or {}):
        model = build_model(build_args)
    return model.eval()


def randomize_(model: Any, seed: int) -> None:
    """Give every parameter and buffer realistic random values, in place.

    Weights: normal with std 1/sqrt(fan-in) (unit-scale activations); biases and the fusion
    layers' residual scales: std 0.02; norm scales: 1 ± 0.1. The same seed gives the same
    values.
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            leaf = name.rsplit(".", 1)[-1]
            if tensor.ndim == 1 and "norm" in name.lower() and leaf == "weight":
                value = 1.0 + 0.1 * torch.randn(tensor.shape, generator=gen)
            elif tensor.ndim <= 1:
                value = 0.02 * torch.randn(tensor.shape, generator=gen)
            else:
                fan_in = tensor[0].numel()
                value = torch.randn(tensor.shape, generator=gen) / fan_in**0.5
            tensor.copy_(value)


@functools.lru_cache(maxsize=1)
def tiny_original() -> tuple[Any, Path, Path]:
    """``(model, checkpoint, text-encoder folder)``: the original code at test size with random
    weights of trained-model magnitudes (logits of a few units, not saturated), its state dict
    saved as the official files are (``{"model": ...}``, keys prefixed ``module.`` as
    DistributedDataParallel leaves them, plus their two tensors no forward pass reads). Built once per test process, in a temporary folder
    removed at exit. Its heads/points are :data:`TINY_ARGS`' (pass :func:`tiny_config_values`
    as ``config``)."""
    import torch

    root = Path(tempfile.mkdtemp(prefix="gdino-original-"))
    atexit.register(shutil.rmtree, root, True)
    folder = write_text_encoder(root / "bert", seed=0, **TINY_BERT)
    model = original_grounding_dino(
        "GroundingDINO_SwinT_OGC.py", folder, swin=TINY_SWIN, **TINY_ARGS
    )
    randomize_(model, seed=1)
    with torch.no_grad():
        # A trained model's logits are a few units and mostly negative (most queries match no
        # token): shrink the queries' scale and point them away from the text on average.
        model.transformer.decoder.norm.weight.mul_(-0.12)
    path = root / "groundingdino_tiny.pth"
    state_dict = dict(model.state_dict())
    # what the official files carry beyond the model's own state dict (the original code
    # loads them with strict=False): the denoising label embedding (dn_labelbook_size + 1
    # rows) and the position-id buffer transformers < 4.31 saved with BERT
    state_dict["label_enc.weight"] = torch.randn(2001, TINY_ARGS["hidden_dim"])
    state_dict["bert.embeddings.position_ids"] = torch.arange(256)[None]
    torch.save({"model": {f"module.{k}": v for k, v in state_dict.items()}}, path)
    return model, path, folder


def tiny_config_values() -> dict[str, int]:
    """The original-config values (``nheads`` …) of :func:`tiny_original_checkpoint`."""
    return {k: TINY_ARGS[k] for k in ("nheads", "enc_n_points", "dec_n_points")}
