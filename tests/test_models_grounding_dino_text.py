"""The tokenizer an original Grounding DINO checkpoint needs: local files only, checked."""

from __future__ import annotations

import pytest

from grounded_sam.errors import CheckpointError, MissingCheckpointError
from grounded_sam.models.grounding_dino_text import (
    TOKENIZER_ENTRY,
    TOKENIZER_FOLDER,
    load_tokenizer,
    original_processor,
    tokenizer_folder,
)
from grounded_sam.testing.grounding_dino import tiny_vocab, write_tiny_vocab


def test_missing_tokenizer_names_the_file_and_the_download_command(tmp_path):
    with pytest.raises(MissingCheckpointError) as err:
        tokenizer_folder(None, checkpoint=tmp_path / "x.pth", models_dir=tmp_path / "models")
    message = str(err.value)
    assert "vocab.txt" in message and f"grounded-sam download {TOKENIZER_ENTRY}" in message
    assert str(tmp_path / "models" / TOKENIZER_FOLDER) in message


def test_found_in_the_models_folder_beside_the_checkpoint_or_where_named(tmp_path):
    models = tmp_path / "models"
    beside = write_tiny_vocab(tmp_path / "ckpts" / TOKENIZER_FOLDER).parent
    assert tokenizer_folder(None, checkpoint=tmp_path / "ckpts/x.pth", models_dir=models) == beside
    registry = write_tiny_vocab(models / TOKENIZER_FOLDER).parent
    assert (
        tokenizer_folder(None, checkpoint=tmp_path / "ckpts/x.pth", models_dir=models) == registry
    )
    assert tokenizer_folder(TOKENIZER_ENTRY, models_dir=models) == registry
    assert tokenizer_folder(beside) == beside
    with pytest.raises(MissingCheckpointError, match="elsewhere"):
        tokenizer_folder(tmp_path / "elsewhere")


def test_load_checks_the_special_ids_and_the_embedding_rows(tmp_path):
    folder = write_tiny_vocab(tmp_path / "ok").parent
    tokenizer = load_tokenizer(folder, vocab_rows=len(tiny_vocab()))
    assert tokenizer.is_fast
    assert tokenizer("Cat .")["input_ids"] == [101, tokenizer.vocab["cat"], 1012, 102]
    with pytest.raises(CheckpointError, match="embeds 100"):
        load_tokenizer(folder, vocab_rows=100)
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    (shifted / "vocab.txt").write_text("\n".join(["[unused]", *tiny_vocab()]) + "\n")
    with pytest.raises(CheckpointError, match="not bert-base-uncased"):
        load_tokenizer(shifted)


def test_processor_resizes_as_the_original_code(tmp_path):
    processor = original_processor(load_tokenizer(write_tiny_vocab(tmp_path).parent))
    assert processor.image_processor.size == {"shortest_edge": 800, "longest_edge": 1333}
    assert list(processor.image_processor.image_mean) == [0.485, 0.456, 0.406]
    assert list(processor.image_processor.image_std) == [0.229, 0.224, 0.225]
