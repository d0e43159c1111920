"""``grounded-sam convert grounding-dino IN.pth OUT_DIR`` and ``label --detector PATH``."""

from __future__ import annotations

import argparse

import pytest

pytest.importorskip("torch")

from _groundingdino_reference import tiny_original  # noqa: E402

from grounded_sam.cli import EXIT_FAILURE, EXIT_OK, main  # noqa: E402
from grounded_sam.cli.label import detector_arg  # noqa: E402


def test_convert_writes_a_model_folder(tmp_path, capsys):
    _, checkpoint, text_encoder = tiny_original()
    config = tmp_path / "GroundingDINO_tiny.py"  # an original config file: read, not run
    config.write_text('modelname = "groundingdino"\nnheads = 8\nenc_n_points = 4\n')
    out = tmp_path / "converted"
    argv = ["convert", "grounding-dino", str(checkpoint), str(out)]
    argv += ["--text-encoder", str(text_encoder), "--config", str(config)]
    assert main(argv) == EXIT_OK
    assert f"wrote {out}" in capsys.readouterr().out
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    assert detector_arg(str(out)) == str(out)  # label --detector takes it
    assert detector_arg(str(checkpoint)) == str(checkpoint)  # and the .pth itself


def test_convert_without_a_tokenizer_says_how_to_get_one(tmp_path, capsys, monkeypatch):
    _, checkpoint, _ = tiny_original()
    monkeypatch.chdir(tmp_path)  # ./models holds no tokenizer
    argv = ["convert", "grounding-dino", str(checkpoint), str(tmp_path / "out")]
    assert main([*argv, "--models-dir", str(tmp_path / "models")]) == EXIT_FAILURE
    err = capsys.readouterr().err
    assert "vocab.txt" in err and "grounded-sam download bert_base_uncased_tokenizer" in err
    assert not (tmp_path / "out").exists()


def test_label_detector_refuses_what_is_neither_a_name_nor_a_model(tmp_path):
    assert detector_arg("clip") == "clip"
    with pytest.raises(argparse.ArgumentTypeError, match="original .pth"):
        detector_arg(str(tmp_path / "nothing.pth"))
