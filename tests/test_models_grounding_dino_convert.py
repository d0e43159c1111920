"""An original checkpoint converted once into a folder from_pretrained reads."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from _groundingdino_reference import tiny_original  # noqa: E402

from grounded_sam.detectors.grounding_dino import (  # noqa: E402
    GroundingDinoDetector,
    missing_model_files,
)
from grounded_sam.models.grounding_dino_convert import convert_original  # noqa: E402


def test_converted_folder_loads_with_from_pretrained_and_computes_the_same(tmp_path):
    _, checkpoint, text_encoder = tiny_original()
    out = convert_original(checkpoint, tmp_path / "converted", text_encoder=text_encoder)
    assert missing_model_files(out) == []
    assert (out / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["converted"]  # no temporary folder left
    loaded = GroundingDinoDetector.from_pretrained(out)
    direct = GroundingDinoDetector.from_original(checkpoint, text_encoder=text_encoder)
    assert loaded.processor.image_processor.size == direct.processor.image_processor.size
    for (name, a), b in zip(
        loaded.model.state_dict().items(), direct.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    a, b = loaded.model.config, direct.model.config
    for key in ("d_model", "encoder_layers", "decoder_layers", "encoder_attention_heads"):
        assert getattr(a, key) == getattr(b, key), key
    assert list(a.backbone_config.depths) == list(b.backbone_config.depths)
    assert a.backbone_config.window_size == b.backbone_config.window_size


def test_existing_folder_is_kept_unless_overwrite(tmp_path):
    _, checkpoint, text_encoder = tiny_original()
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="--overwrite"):
        convert_original(checkpoint, out, text_encoder=text_encoder)
    assert (out / "mine.txt").read_text() == "keep"
    convert_original(checkpoint, out, text_encoder=text_encoder, overwrite=True)
    assert not (out / "mine.txt").exists() and (out / "config.json").is_file()
