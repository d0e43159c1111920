"""A ``GroundingDinoConfig`` for an original Grounding DINO state dict, read from its shapes.

The official files differ only in the Swin backbone (Swin-T OGC: embed 96, depths 2-2-6-2,
window 7; Swin-B: embed 128, depths 2-2-18-2, window 12); every size — Swin's width, depths,
heads per stage and window, BERT's width and layers, ``d_model``, layer counts, feed-forward
widths, queries, feature levels — is read from tensor shapes. Three numbers are not in any
shape: the transformer's attention heads and the deformable sampling points (the official
configs use 8 and 4) and BERT's heads (bert-base-uncased: 12, i.e. 64 channels each). They
come from an original config file (``GroundingDINO_SwinT_OGC.py``), keyword overrides, or
those official values.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grounded_sam.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch

OFFICIAL_HEADS = 8
OFFICIAL_POINTS = 4
BERT_HEAD_DIM = 64


def read_original_config(path: str | Path) -> dict[str, Any]:
    """The literal assignments of an original config file (``nheads = 8`` …), not executed.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not Python, or a value that is not a literal.
    """
    path = Path(path).expanduser()
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        values = {}
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name):
                    values[target.id] = ast.literal_eval(node.value)
    except (SyntaxError, ValueError) as exc:
        raise CheckpointError(
            f"cannot read original Grounding DINO config {path}: {exc}; pass the unchanged "
            "GroundingDINO_SwinT_OGC.py / GroundingDINO_SwinB_cfg.py, or no config"
        ) from exc
    return values


def _count(state_dict: Mapping[str, Any], pattern: str) -> int:
    """How many distinct values the first group of ``pattern`` takes over the keys."""
    regex = re.compile(pattern)
    return len({m[1] for k in state_dict if (m := regex.match(k))})


def _shape(state_dict: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    try:
        return tuple(state_dict[key].shape)
    except KeyError:
        raise CheckpointError(
            f"the original Grounding DINO checkpoint lacks {key}, needed to read the "
            "architecture; is the file complete?"
        ) from None


def infer_config(
    state_dict: Mapping[str, torch.Tensor],
    *,
    nheads: int | None = None,
    enc_n_points: int | None = None,
    dec_n_points: int | None = None,
    text_heads: int | None = None,
    original_config: Mapping[str, Any] | None = None,
) -> Any:
    """The transformers ``GroundingDinoConfig`` of an original state dict (original names).

    Args:
        state_dict: the original checkpoint's tensors (``module.`` prefixes removed).
        nheads, enc_n_points, dec_n_points: transformer heads and sampling points; default:
            ``original_config``'s values, else 8 and 4 (both official configs).
        text_heads: BERT's heads; default BERT's width / 64 (12 for bert-base-uncased).
        original_config: values of an original config file (:func:`read_original_config`).

    Raises:
        CheckpointError: a key the architecture is read from is missing, or the numbers do
            not fit together (named in the message).
    """
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    cfg = dict(original_config or {})
    nheads = nheads or cfg.get("nheads", OFFICIAL_HEADS)
    enc_n_points = enc_n_points or cfg.get("enc_n_points", OFFICIAL_POINTS)
    dec_n_points = dec_n_points or cfg.get("dec_n_points", OFFICIAL_POINTS)
    sd = state_dict

    # Swin: width and patch from the stem, per stage: blocks, heads (bias table columns),
    # window (table rows = (2w - 1)^2); output stages from the per-stage norms.
    embed_dim, _, patch, _ = _shape(sd, "backbone.0.patch_embed.proj.weight")
    n_stages = _count(sd, r"^backbone\.0\.layers\.(\d+)\.")
    depths = [_count(sd, rf"^backbone\.0\.layers\.{i}\.blocks\.(\d+)\.") for i in range(n_stages)]
    tables = [
        _shape(sd, f"backbone.0.layers.{i}.blocks.0.attn.relative_position_bias_table")
        for i in range(n_stages)
    ]
    window = round(tables[0][0] ** 0.5 + 1) // 2
    out_stages = sorted(
        int(m[1]) for k in sd if (m := re.match(r"^backbone\.0\.norm(\d+)\.weight$", k))
    )
    backbone = SwinConfig(
        image_size=384 if window == 12 else 224,
        patch_size=patch,
        embed_dim=embed_dim,
        depths=depths,
        num_heads=[t[1] for t in tables],
        window_size=window,
        out_features=[f"stage{i + 1}" for i in out_stages],
        drop_path_rate=0.0,
    )

    vocab, text_width = _shape(sd, "bert.embeddings.word_embeddings.weight")
    text = BertConfig(
        vocab_size=vocab,
        hidden_size=text_width,
        num_hidden_layers=_count(sd, r"^bert\.encoder\.layer\.(\d+)\."),
        num_attention_heads=text_heads or max(1, text_width // BERT_HEAD_DIM),
        intermediate_size=_shape(sd, "bert.encoder.layer.0.intermediate.dense.weight")[0],
        max_position_embeddings=_shape(sd, "bert.embeddings.position_embeddings.weight")[0],
        type_vocab_size=_shape(sd, "bert.embeddings.token_type_embeddings.weight")[0],
    )

    d_model = _shape(sd, "feat_map.weight")[0]
    levels = _shape(sd, "transformer.level_embed")[0]
    enc_weights = _shape(sd, "transformer.encoder.layers.0.self_attn.attention_weights.weight")[0]
    dec_weights = _shape(sd, "transformer.decoder.layers.0.cross_attn.attention_weights.weight")[0]
    if (
        enc_weights != nheads * levels * enc_n_points
        or dec_weights != nheads * levels * dec_n_points
    ):
        raise CheckpointError(
            f"the deformable attention has {enc_weights} (encoder) / {dec_weights} (decoder) "
            f"sampling weights, not heads {nheads} x levels {levels} x points "
            f"{enc_n_points}/{dec_n_points}; pass the checkpoint's original config file"
        )
    return GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=d_model,
        num_queries=_shape(sd, "transformer.tgt_embed.weight")[0],
        encoder_layers=_count(sd, r"^transformer\.encoder\.layers\.(\d+)\."),
        decoder_layers=_count(sd, r"^transformer\.decoder\.layers\.(\d+)\."),
        encoder_ffn_dim=_shape(sd, "transformer.encoder.layers.0.linear1.weight")[0],
        decoder_ffn_dim=_shape(sd, "transformer.decoder.layers.0.linear1.weight")[0],
        encoder_attention_heads=nheads,
        decoder_attention_heads=nheads,
        num_feature_levels=levels,
        encoder_n_points=enc_n_points,
        decoder_n_points=dec_n_points,
        max_text_len=int(cfg.get("max_text_len", 256)),
        positional_embedding_temperature=int(cfg.get("pe_temperatureH", 20)),
        two_stage=True,
        embedding_init_target=True,
        decoder_bbox_embed_share=True,
        two_stage_bbox_embed_share=False,
        query_dim=4,
        dropout=0.0,
        fusion_dropout=0.0,
        fusion_droppath=0.0,
        text_enhancer_dropout=0.0,
        activation_function="relu",
        layer_norm_eps=1e-5,
    )
