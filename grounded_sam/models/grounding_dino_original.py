"""The original IDEA-Research Grounding DINO checkpoints, mapped onto transformers' model.

``groundingdino_swint_ogc.pth`` and ``groundingdino_swinb_cogcoor.pth`` hold the state dict of
the original ``groundingdino`` code (``{"model": {name: tensor}}``, names sometimes prefixed
``module.``). :func:`convert_state_dict` renames every key to
``GroundingDinoForObjectDetection``'s, splits the fused projections
(``nn.MultiheadAttention.in_proj_*`` and Swin's ``qkv``, ``(3 * C, C)`` rows ordered
query, key, value) and drops the few tensors the original stores but never uses in a forward
pass (:data:`UNUSED`). The architecture is read from the tensors' shapes (Swin-T OGC vs
Swin-B and anything between; :mod:`grounded_sam.models.grounding_dino_original_config`).
:func:`load_original` builds the model and loads it strictly: a missing, unexpected or
mis-shaped key is a :class:`CheckpointError` that lists it.

Nothing here downloads; the tokenizer is not part of the checkpoint (see
:mod:`grounded_sam.models.grounding_dino_text`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grounded_sam.errors import CheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch

_SWIN = "model.backbone.conv_encoder.model."

# (pattern, replacement) applied in order to each original key; the first match wins.
_RENAMES: tuple[tuple[str, str], ...] = (
    # Swin backbone
    (r"^backbone\.0\.patch_embed\.proj\.", _SWIN + "swin.embeddings.patch_embeddings.projection."),
    (r"^backbone\.0\.patch_embed\.norm\.", _SWIN + "swin.embeddings.norm."),
    (r"^backbone\.0\.layers\.(\d+)\.blocks\.(\d+)\.norm1\.", _SWIN + r"swin.encoder.layers.\1.blocks.\2.layernorm_before."),
    (r"^backbone\.0\.layers\.(\d+)\.blocks\.(\d+)\.norm2\.", _SWIN + r"swin.encoder.layers.\1.blocks.\2.layernorm_after."),
    (r"^backbone\.0\.layers\.(\d+)\.blocks\.(\d+)\.attn\.proj\.", _SWIN + r"swin.encoder.layers.\1.blocks.\2.attention.o_proj."),
    (r"^backbone\.0\.layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table$", _SWIN + r"swin.encoder.layers.\1.blocks.\2.attention.relative_position_bias.relative_position_bias_table"),
    (r"^backbone\.0\.layers\.(\d+)\.blocks\.(\d+)\.mlp\.", _SWIN + r"swin.encoder.layers.\1.blocks.\2.mlp."),
    (r"^backbone\.0\.layers\.(\d+)\.downsample\.", _SWIN + r"swin.encoder.layers.\1.downsample."),
    # BERT
    (r"^bert\.(embeddings|encoder)\.", r"model.text_backbone.\1."),
    (r"^feat_map\.", "model.text_projection."),
    # image features into the transformer
    (r"^input_proj\.", "model.input_proj_vision."),
    (r"^transformer\.level_embed$", "model.level_embed"),
    (r"^transformer\.tgt_embed\.", "model.query_position_embeddings."),
    (r"^transformer\.enc_output\.", "model.enc_output."),
    (r"^transformer\.enc_output_norm\.", "model.enc_output_norm."),
    (r"^transformer\.enc_out_bbox_embed\.", "model.encoder_output_bbox_embed."),
    # encoder: deformable image layers, text enhancer, fusion
    (r"^transformer\.encoder\.layers\.(\d+)\.self_attn\.", r"model.encoder.layers.\1.deformable_layer.self_attn."),
    (r"^transformer\.encoder\.layers\.(\d+)\.linear([12])\.", r"model.encoder.layers.\1.deformable_layer.fc\2."),
    (r"^transformer\.encoder\.layers\.(\d+)\.norm1\.", r"model.encoder.layers.\1.deformable_layer.self_attn_layer_norm."),
    (r"^transformer\.encoder\.layers\.(\d+)\.norm2\.", r"model.encoder.layers.\1.deformable_layer.final_layer_norm."),
    (r"^transformer\.encoder\.text_layers\.(\d+)\.self_attn\.out_proj\.", r"model.encoder.layers.\1.text_enhancer_layer.self_attn.out_proj."),
    (r"^transformer\.encoder\.text_layers\.(\d+)\.linear([12])\.", r"model.encoder.layers.\1.text_enhancer_layer.fc\2."),
    (r"^transformer\.encoder\.text_layers\.(\d+)\.norm1\.", r"model.encoder.layers.\1.text_enhancer_layer.layer_norm_before."),
    (r"^transformer\.encoder\.text_layers\.(\d+)\.norm2\.", r"model.encoder.layers.\1.text_enhancer_layer.layer_norm_after."),
    (r"^transformer\.encoder\.fusion_layers\.(\d+)\.gamma_v$", r"model.encoder.layers.\1.fusion_layer.vision_param"),
    (r"^transformer\.encoder\.fusion_layers\.(\d+)\.gamma_l$", r"model.encoder.layers.\1.fusion_layer.text_param"),
    (r"^transformer\.encoder\.fusion_layers\.(\d+)\.layer_norm_v\.", r"model.encoder.layers.\1.fusion_layer.layer_norm_vision."),
    (r"^transformer\.encoder\.fusion_layers\.(\d+)\.layer_norm_l\.", r"model.encoder.layers.\1.fusion_layer.layer_norm_text."),
    (r"^transformer\.encoder\.fusion_layers\.(\d+)\.attn\.(out_|values_|)v_proj\.", r"model.encoder.layers.\1.fusion_layer.attn.\2vision_proj."),
    (r"^transformer\.encoder\.fusion_layers\.(\d+)\.attn\.(out_|values_|)l_proj\.", r"model.encoder.layers.\1.fusion_layer.attn.\2text_proj."),
    # decoder
    (r"^transformer\.decoder\.layers\.(\d+)\.cross_attn\.", r"model.decoder.layers.\1.encoder_attn."),
    (r"^transformer\.decoder\.layers\.(\d+)\.norm1\.", r"model.decoder.layers.\1.encoder_attn_layer_norm."),
    (r"^transformer\.decoder\.layers\.(\d+)\.ca_text\.out_proj\.", r"model.decoder.layers.\1.encoder_attn_text.out_proj."),
    (r"^transformer\.decoder\.layers\.(\d+)\.catext_norm\.", r"model.decoder.layers.\1.encoder_attn_text_layer_norm."),
    (r"^transformer\.decoder\.layers\.(\d+)\.self_attn\.out_proj\.", r"model.decoder.layers.\1.self_attn.out_proj."),
    (r"^transformer\.decoder\.layers\.(\d+)\.norm2\.", r"model.decoder.layers.\1.self_attn_layer_norm."),
    (r"^transformer\.decoder\.layers\.(\d+)\.linear([12])\.", r"model.decoder.layers.\1.fc\2."),
    (r"^transformer\.decoder\.layers\.(\d+)\.norm3\.", r"model.decoder.layers.\1.final_layer_norm."),
    (r"^transformer\.decoder\.norm\.", "model.decoder.layer_norm."),
    (r"^transformer\.decoder\.ref_point_head\.", "model.decoder.reference_points_head."),
    (r"^transformer\.decoder\.bbox_embed\.", "model.decoder.bbox_embed."),
    (r"^bbox_embed\.", "bbox_embed."),
)  # fmt: skip

# Fused (3 * C, C) query/key/value projections: original key pattern -> target prefix; the
# target gets "<q><suffix>", "<k><suffix>", "<v><suffix>" for weight and bias.
_FUSED: tuple[tuple[str, str, tuple[str, str, str]], ...] = (
    (r"^backbone\.0\.layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", _SWIN + r"swin.encoder.layers.\1.blocks.\2.attention.", ("q_proj", "k_proj", "v_proj")),
    (r"^transformer\.encoder\.text_layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$", r"model.encoder.layers.\1.text_enhancer_layer.self_attn.", ("query", "key", "value")),
    (r"^transformer\.decoder\.layers\.(\d+)\.ca_text\.in_proj_(weight|bias)$", r"model.decoder.layers.\1.encoder_attn_text.", ("query", "key", "value")),
    (r"^transformer\.decoder\.layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$", r"model.decoder.layers.\1.self_attn.", ("query", "key", "value")),
)  # fmt: skip

# Tensors of the original that no forward pass reads: Swin's integer index table (transformers
# recomputes it), BERT's pooler (the detector reads token states, not the pooled [CLS]), the
# position-id buffer older transformers saved with BERT (arange, recomputed) and the
# denoising-training label embedding both official files carry (``label_enc``).
UNUSED: tuple[str, ...] = (
    r"^backbone\.0\.layers\.\d+\.blocks\.\d+\.attn\.relative_position_index$",
    r"^bert\.pooler\.",
    r"^bert\.embeddings\.position_ids$",
    r"^label_enc\.weight$",
)

# Swin's output norms: the original's norm{i} normalises stage index i (0-based), which
# transformers calls "stage{i + 1}".
_STAGE_NORM = re.compile(r"^backbone\.0\.norm(\d+)\.(weight|bias)$")

# Keys every original Grounding DINO state dict has; their absence means another model's file.
_SIGNATURE = ("backbone.0.patch_embed.proj.weight", "feat_map.weight", "transformer.level_embed")


def _strip_prefix(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that DistributedDataParallel training leaves on keys."""
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def read_original(path: str | Path) -> dict[str, torch.Tensor]:
    """The original state dict in ``path`` (``torch.load(..., weights_only=True)``, on CPU).

    Raises:
        MissingCheckpointError: no such file.
        CheckpointError: unreadable (truncated, not a torch file) or not an original
            Grounding DINO checkpoint; the message names the file and the problem.
    """
    from grounded_sam.models.loading import read_state_dict

    state_dict = _strip_prefix(read_state_dict(path))
    missing = [k for k in _SIGNATURE if k not in state_dict]
    if missing:
        raise CheckpointError(
            f"{path} is not an original Grounding DINO checkpoint (groundingdino_swint_ogc.pth "
            f"or groundingdino_swinb_cogcoor.pth): it lacks {', '.join(missing)}. A folder "
            "written by save_pretrained loads with GroundingDinoDetector.from_pretrained"
        )
    return state_dict


def convert_state_dict(original: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``original`` (the ``groundingdino`` code's names) renamed to transformers' names.

    Fused ``(3C, C)`` / ``(3C,)`` projections are split into three; :data:`UNUSED` keys are
    dropped. Tensors are shared with ``original`` where no split happens (no copy).

    Raises:
        CheckpointError: a key that none of the rules knows (listed), or a fused projection
            whose first dimension is not a multiple of 3.
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in _strip_prefix(original).items():
        if any(re.search(p, key) for p in UNUSED):
            continue
        stage = _STAGE_NORM.match(key)
        if stage:
            out[f"{_SWIN}hidden_states_norms.stage{int(stage[1]) + 1}.{stage[2]}"] = tensor
            continue
        for pattern, target, parts in _FUSED:
            match = re.match(pattern, key)
            if match:
                if tensor.shape[0] % 3:
                    raise CheckpointError(
                        f"{key} has shape {tuple(tensor.shape)}: a fused query/key/value "
                        "projection needs a first dimension divisible by 3"
                    )
                prefix, kind = match.expand(target), match.groups()[-1]
                for part, chunk in zip(parts, tensor.chunk(3, dim=0), strict=True):
                    out[f"{prefix}{part}.{kind}"] = chunk.clone()
                break
        else:
            for pattern, replacement in _RENAMES:
                if re.search(pattern, key):
                    out[re.sub(pattern, replacement, key)] = tensor
                    break
            else:
                unknown.append(key)
    if unknown:
        shown = ", ".join(sorted(unknown)[:10])
        more = f" … and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise CheckpointError(
            f"unexpected keys in the original Grounding DINO checkpoint ({len(unknown)}: "
            f"{shown}{more}); is it a Grounding DINO variant this converter does not know?"
        )
    return out


def fill_unused_targets(converted: dict[str, torch.Tensor], model: Any) -> list[str]:
    """Add the transformers tensors no original tensor maps to and no forward pass reads.

    Only Swin's final ``layernorm`` (transformers' backbone normalises each output stage with
    ``hidden_states_norms`` instead) qualifies: it gets the identity (weight 1, bias 0).
    Returns the keys added; anything else missing stays missing for the strict check.
    """
    import torch

    added = []
    expected = model.state_dict()
    for key in (f"{_SWIN}swin.layernorm.weight", f"{_SWIN}swin.layernorm.bias"):
        if key in expected and key not in converted:
            fill = torch.ones_like if key.endswith("weight") else torch.zeros_like
            converted[key] = fill(expected[key])
            added.append(key)
    return added


def load_original(checkpoint: str | Path | Mapping[str, torch.Tensor], config: Any = None) -> Any:
    """A ``GroundingDinoForObjectDetection`` (eval mode, CPU, float32) with the weights of an
    original checkpoint, loaded strictly.

    Args:
        checkpoint: a ``.pth`` file (read with ``weights_only=True``) or its state dict.
        config: ``None`` (read from the shapes, official heads/points), a path to the original
            config file (``GroundingDINO_SwinT_OGC.py``; read, never executed), a mapping of
            such values (``{"nheads": 8, "enc_n_points": 4, ...}``) or a transformers
            ``GroundingDinoConfig`` used as is.

    Raises:
        MissingCheckpointError: ``checkpoint`` does not exist.
        CheckpointError: unreadable or not Grounding DINO, or the converted tensors do not fit
            the model: missing, unexpected and mis-shaped keys are listed.
    """
    import torch
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    from grounded_sam.models.grounding_dino_original_config import (
        infer_config,
        read_original_config,
    )
    from grounded_sam.models.loading import check_state_dict

    source = "original Grounding DINO state dict"
    if isinstance(checkpoint, Mapping):
        state_dict = _strip_prefix(checkpoint)
    else:
        source = f"original Grounding DINO checkpoint {Path(checkpoint)}"
        state_dict = read_original(checkpoint)
    if not isinstance(config, GroundingDinoConfig):
        if isinstance(config, (str, Path)):
            config = read_original_config(config)
        config = infer_config(state_dict, original_config=config)
    converted = convert_state_dict(state_dict)
    model = GroundingDinoForObjectDetection(config)
    fill_unused_targets(converted, model)
    check_state_dict(model, converted, source=f"{source} (converted)")
    with torch.no_grad():
        model.load_state_dict(converted, strict=True)
    return model.eval()
