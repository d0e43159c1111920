"""The transformers config of an original checkpoint: from shapes, and from the config file."""

from __future__ import annotations

import pytest

from grounded_sam.errors import CheckpointError
from grounded_sam.models.grounding_dino_original_config import read_original_config

torch = pytest.importorskip("torch")


def test_original_config_file_is_read_not_executed(tmp_path):
    path = tmp_path / "GroundingDINO_SwinT_OGC.py"
    path.write_text(
        'batch_size = 1\nbackbone = "swin_T_224_1k"\nreturn_interm_indices = [1, 2, 3]\n'
        "nheads = 8\nimport os\nos.remove(__file__)\n"
    )
    values = read_original_config(path)
    assert values == {
        "batch_size": 1,
        "backbone": "swin_T_224_1k",
        "return_interm_indices": [1, 2, 3],
        "nheads": 8,
    }
    assert path.exists()
    path.write_text("nheads = 4 * 2\n")
    with pytest.raises(CheckpointError, match="cannot read original Grounding DINO config"):
        read_original_config(path)


def test_heads_and_points_that_do_not_fit_the_shapes_are_an_error():
    from _groundingdino_reference import tiny_original

    from grounded_sam.models.grounding_dino_original import read_original
    from grounded_sam.models.grounding_dino_original_config import infer_config

    state_dict = read_original(tiny_original()[1])
    config = infer_config(state_dict)
    assert (config.encoder_attention_heads, config.encoder_n_points) == (8, 4)
    assert config.backbone_config.depths == [1, 1, 2, 1]
    assert config.text_config.num_attention_heads == 1  # 64 channels per head
    with pytest.raises(CheckpointError, match="pass the checkpoint's original config file"):
        infer_config(state_dict, nheads=4, enc_n_points=3)
    del state_dict["feat_map.weight"]
    with pytest.raises(CheckpointError, match="lacks feat_map.weight"):
        infer_config(state_dict)
