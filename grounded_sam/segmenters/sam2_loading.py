"""Build a SAM 2.1 model from ``sam2``'s own modules, in code, and load its checkpoint strictly.

``sam2`` builds its models from Hydra YAML files through a configuration module it
initialises globally on import. Here the four SAM 2.1 image models are a plain table of the
numbers in which their YAML files differ (:data:`SAM2_CONFIGS`), and :func:`build_sam2_model`
instantiates ``sam2.modeling.sam2_base.SAM2Base`` from them with the values of
``sam2/configs/sam2.1/sam2.1_hiera_*.yaml`` plus the three mask-decoder settings that
``sam2.build_sam.build_sam2`` adds by default (``apply_postprocessing=True``). The memory
modules are built too although images never use them: the official checkpoints hold their
weights, and loading is strict. ``sam2`` and torch are imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from grounded_sam.errors import MissingCheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from sam2.modeling.sam2_base import SAM2Base

# model_type -> the Hiera trunk settings that differ between sizes (sam2.1_hiera_*.yaml)
SAM2_CONFIGS: dict[str, dict[str, Any]] = {
    "sam2.1_hiera_tiny": {
        "embed_dim": 96,
        "num_heads": 1,
        "stages": (1, 2, 7, 2),
        "global_att_blocks": (5, 7, 9),
        "window_pos_embed_bkg_spatial_size": (7, 7),
    },
    "sam2.1_hiera_small": {
        "embed_dim": 96,
        "num_heads": 1,
        "stages": (1, 2, 11, 2),
        "global_att_blocks": (7, 10, 13),
        "window_pos_embed_bkg_spatial_size": (7, 7),
    },
    "sam2.1_hiera_base_plus": {
        "embed_dim": 112,
        "num_heads": 2,
        "stages": (2, 3, 16, 3),
        "global_att_blocks": (12, 16, 20),
        "window_pos_embed_bkg_spatial_size": (14, 14),
    },
    "sam2.1_hiera_large": {
        "embed_dim": 144,
        "num_heads": 2,
        "stages": (2, 6, 36, 4),
        "global_att_blocks": (23, 33, 43),
        "window_pos_embed_bkg_spatial_size": (7, 7),
        "window_spec": (8, 4, 16, 8),
    },
}
SAM2_MODEL_TYPES = tuple(SAM2_CONFIGS)


def require_sam2() -> None:
    """Raise ImportError saying how to install ``sam2`` when it is missing."""
    try:
        import sam2  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name not in ("sam2", "hydra", "iopath", "omegaconf"):
            raise
        raise ImportError(
            f"SAM 2.1 needs the sam2 package ({exc.name} is missing): "
            "pip install 'grounded-sam[sam2]' (or: pip install sam2)"
        ) from exc


def build_sam2_model(
    *,
    embed_dim: int = 96,
    num_heads: int = 1,
    stages: tuple[int, ...] = (1, 2, 7, 2),
    global_att_blocks: tuple[int, ...] = (5, 7, 9),
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (7, 7),
    window_spec: tuple[int, ...] = (8, 4, 14, 7),
    d_model: int = 256,
    mem_dim: int = 64,
    memory_layers: int = 4,
    memory_feedforward: int = 2048,
    num_maskmem: int = 7,
    image_size: int = 1024,
) -> SAM2Base:
    """An untrained SAM 2.1 ``SAM2Base`` (eval mode, CPU) with the official architecture.

    The defaults are Hiera-T (``sam2.1_hiera_t.yaml``); the entries of :data:`SAM2_CONFIGS`
    give the other sizes. ``d_model`` (image embedding channels, 256 in every official model),
    ``mem_dim``, ``memory_layers`` and ``memory_feedforward`` exist so that tests can build a
    small model (``grounded_sam.testing.sam2``). ``image_size`` must stay 1024 for
    ``SAM2ImagePredictor``, which assumes 256/128/64 feature maps.
    """
    require_sam2()
    from sam2.modeling.backbones.hieradet import Hiera
    from sam2.modeling.backbones.image_encoder import FpnNeck, ImageEncoder
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.transformer import RoPEAttention
    from sam2.modeling.sam2_base import SAM2Base

    trunk = Hiera(
        embed_dim=embed_dim,
        num_heads=num_heads,
        stages=tuple(stages),
        global_att_blocks=tuple(global_att_blocks),
        window_pos_embed_bkg_spatial_size=tuple(window_pos_embed_bkg_spatial_size),
        window_spec=tuple(window_spec),
    )
    neck = FpnNeck(
        position_encoding=PositionEmbeddingSine(
            num_pos_feats=d_model, normalize=True, scale=None, temperature=10000
        ),
        d_model=d_model,
        backbone_channel_list=list(trunk.channel_list),
        fpn_top_down_levels=[2, 3],
        fpn_interp_model="nearest",
    )

    def rope(**kw: Any) -> RoPEAttention:
        return RoPEAttention(
            rope_theta=10000.0,
            feat_sizes=(64, 64),
            embedding_dim=d_model,
            num_heads=1,
            downsample_rate=1,
            dropout=0.1,
            **kw,
        )

    memory_attention = MemoryAttention(
        d_model=d_model,
        pos_enc_at_input=True,
        layer=MemoryAttentionLayer(
            activation="relu",
            cross_attention=rope(rope_k_repeat=True, kv_in_dim=mem_dim),
            d_model=d_model,
            dim_feedforward=memory_feedforward,
            dropout=0.1,
            pos_enc_at_attn=False,
            pos_enc_at_cross_attn_keys=True,
            pos_enc_at_cross_attn_queries=False,
            self_attention=rope(),
        ),
        num_layers=memory_layers,
    )
    memory_encoder = MemoryEncoder(
        out_dim=mem_dim,
        position_encoding=PositionEmbeddingSine(
            num_pos_feats=mem_dim, normalize=True, scale=None, temperature=10000
        ),
        mask_downsampler=MaskDownSampler(embed_dim=d_model, kernel_size=3, stride=2, padding=1),
        fuser=Fuser(
            CXBlock(
                dim=d_model,
                kernel_size=7,
                padding=3,
                layer_scale_init_value=1e-6,
                use_dwconv=True,
            ),
            num_layers=2,
        ),
        in_dim=d_model,
    )
    model = SAM2Base(
        image_encoder=ImageEncoder(trunk=trunk, neck=neck, scalp=1),
        memory_attention=memory_attention,
        memory_encoder=memory_encoder,
        num_maskmem=num_maskmem,
        image_size=image_size,
        sigmoid_scale_for_mem_enc=20.0,
        sigmoid_bias_for_mem_enc=-10.0,
        use_mask_input_as_output_without_sam=True,
        directly_add_no_mem_embed=True,
        no_obj_embed_spatial=True,
        use_high_res_features_in_sam=True,
        multimask_output_in_sam=True,
        iou_prediction_use_sigmoid=True,
        use_obj_ptrs_in_encoder=True,
        add_tpos_enc_to_obj_ptrs=True,
        proj_tpos_enc_in_obj_ptrs=True,
        use_signed_tpos_enc_to_obj_ptrs=True,
        only_obj_ptrs_in_the_past_for_eval=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        fixed_no_obj_ptr=True,
        multimask_output_for_tracking=True,
        use_multimask_token_for_obj_ptr=True,
        multimask_min_pt_num=0,
        multimask_max_pt_num=1,
        use_mlp_for_obj_ptr_proj=True,
        compile_image_encoder=False,
        # what sam2.build_sam.build_sam2 adds with apply_postprocessing=True (its default)
        sam_mask_decoder_extra_args={
            "dynamic_multimask_via_stability": True,
            "dynamic_multimask_stability_delta": 0.05,
            "dynamic_multimask_stability_thresh": 0.98,
        },
    )
    return model.eval()


def build_sam2(
    model_type: str,
    path: str | Path,
    *,
    builder: Callable[[], SAM2Base] | None = None,
    name: str | None = None,
) -> SAM2Base:
    """SAM 2.1 ``model_type`` (a key of :data:`SAM2_CONFIGS`) with the weights at ``path``.

    The official ``.pt`` files hold ``{"model": state_dict}``; they are read on the CPU with
    ``weights_only=True`` and every key must fit (the mismatches are listed). ``builder``: a
    zero-argument function returning an unloaded ``SAM2Base`` of another configuration
    (``model_type`` then only names it); ``name``: the download name shown in errors
    (default: ``model_type``).

    Raises:
        MissingCheckpointError: ``path`` does not exist (checked before building).
        CheckpointError: the file does not fit the architecture.
        ValueError: unknown ``model_type`` and no ``builder``.
    """
    from grounded_sam.models.loading import load_state_dict_strict

    if builder is None:
        if model_type not in SAM2_CONFIGS:
            raise ValueError(
                f"unknown SAM 2 model_type {model_type!r}; expected one of {SAM2_MODEL_TYPES} "
                "(or pass builder=...)"
            )
        config = SAM2_CONFIGS[model_type]

        def builder() -> SAM2Base:
            return build_sam2_model(**config)

    name = name or model_type
    if not Path(path).expanduser().exists():
        raise MissingCheckpointError(Path(path).expanduser(), name=name)
    model = builder()
    load_state_dict_strict(model, path, name=name)
    return model.eval()
