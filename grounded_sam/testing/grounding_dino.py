"""A tiny, seeded, random Grounding DINO built from transformers' own classes.

``tiny_grounding_dino()`` returns ``(model, processor)``: a ``GroundingDinoForObjectDetection``
with a two-stage Swin backbone and a one-layer BERT, and a ``GroundingDinoProcessor`` made of a
``BertTokenizerFast`` (read from a ``vocab.txt`` this module writes) and a
``GroundingDinoImageProcessor`` that resizes to a 64-pixel short side. It runs the real
tokenisation, forward pass and post-processing in milliseconds; its outputs are meaningless.

Grounding DINO hard-codes the ids of BERT's special tokens ([CLS]=101, [SEP]=102, "."=1012,
"?"=1029; they delimit the classes of a prompt), so the vocabulary puts them at exactly those
ids and fills the gaps with filler tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

# Fixed ids, as in bert-base-uncased; Grounding DINO's model relies on 101, 102, 1012 and 1029.
SPECIAL_IDS: dict[str, int] = {
    "[PAD]": 0,
    "[UNK]": 100,
    "[CLS]": 101,
    "[SEP]": 102,
    "[MASK]": 103,
    ".": 1012,
    "?": 1029,
}

# Words (and word pieces) every tiny vocabulary knows: the class names used in tests, notebooks
# and the app's smoke mode, plus "object" + "##0".."##9" for arbitrarily many distinct classes
# ("object123" -> object ##1 ##2 ##3).
DEFAULT_WORDS: tuple[str, ...] = (
    "a",
    "the",
    "cat",
    "dog",
    "person",
    "car",
    "bird",
    "red",
    "big",
    "small",
    "traffic",
    "light",
    "stop",
    "sign",
    "fire",
    "hydrant",
    "chair",
    "table",
    "object",
    "t",
    "shirt",
    "tooth",
    "brush",
    "sky",
    "horse",
    "zebra",
    "##s",
    "##hy",
    "##ra",
    "##brush",
    "-",
    ",",
    "!",
    "'",
    *(str(d) for d in range(10)),
    *(f"##{d}" for d in range(10)),
)


def tiny_vocab(words: Iterable[str] = ()) -> list[str]:
    """The token list of a tiny WordPiece vocabulary; index = token id.

    Special tokens sit at their bert-base-uncased ids (:data:`SPECIAL_IDS`); ``DEFAULT_WORDS``
    and ``words`` (lower case; ``##x`` for a word piece) follow 1029; the gaps hold
    ``[unusedN]`` fillers that no text ever produces.
    """
    extra = [w for w in dict.fromkeys([*DEFAULT_WORDS, *words]) if w not in SPECIAL_IDS]
    size = max(SPECIAL_IDS.values()) + 1
    vocab = [f"[unused{i}]" for i in range(size)]
    for token, idx in SPECIAL_IDS.items():
        vocab[idx] = token
    return vocab + extra


def write_tiny_vocab(directory: str | Path, words: Iterable[str] = ()) -> Path:
    """Write ``vocab.txt`` (one token a line, line number = id) into ``directory``; return its path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "vocab.txt"
    path.write_text("\n".join(tiny_vocab(words)) + "\n", encoding="utf-8")
    return path


def tiny_grounding_dino_config(vocab_size: int, **overrides: Any) -> Any:
    """A ``GroundingDinoConfig`` small enough for unit tests (about 0.3 M parameters).

    Swin: 2 stages of depth 1, embed_dim 16, window 4; BERT: 1 layer, hidden 32; d_model 32,
    one encoder and two decoder layers, 30 queries, 3 feature levels. ``max_text_len`` stays at
    the real model's 256 so prompt-length limits behave as in production.
    """
    from transformers import BertConfig, GroundingDinoConfig, SwinConfig

    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1],
        num_heads=[1, 2],
        window_size=4,
        out_features=["stage1", "stage2"],
        drop_path_rate=0.0,
    )
    text = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=256,
    )
    kwargs: dict[str, Any] = dict(
        backbone_config=backbone,
        text_config=text,
        d_model=32,
        num_queries=30,
        encoder_layers=1,
        decoder_layers=2,  # transformers 5 cannot tie the box heads of a 1-layer decoder
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_feature_levels=3,
        encoder_n_points=2,
        decoder_n_points=2,
        fusion_droppath=0.0,
        dropout=0.0,
    )
    kwargs.update(overrides)
    return GroundingDinoConfig(**kwargs)


def tiny_grounding_dino_processor(directory: str | Path, words: Iterable[str] = ()) -> Any:
    """A ``GroundingDinoProcessor`` whose tokenizer reads a tiny ``vocab.txt`` written to ``directory``.

    The image processor resizes to shortest edge 64, longest edge 96 (instead of 800/1333).
    """
    from transformers import BertTokenizerFast, GroundingDinoImageProcessor, GroundingDinoProcessor

    write_tiny_vocab(directory, words)
    # BertTokenizer(vocab_file=...) ignores the file in transformers 5; from_pretrained reads it.
    tokenizer = BertTokenizerFast.from_pretrained(str(directory), local_files_only=True)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    return GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)


def tiny_grounding_dino(
    directory: str | Path, seed: int = 0, words: Iterable[str] = (), **config_overrides: Any
) -> tuple[Any, Any]:
    """``(model, processor)``: a seeded random tiny Grounding DINO in eval mode, on CPU, fp32.

    Args:
        directory: where the tokenizer's ``vocab.txt`` is written (e.g. pytest's ``tmp_path``).
        seed: torch seed for the random weights; equal seeds give equal models.
        words: extra vocabulary entries (lower case; ``##x`` for word pieces).
        config_overrides: passed to :func:`tiny_grounding_dino_config`.
    """
    import torch
    from transformers import GroundingDinoForObjectDetection

    processor = tiny_grounding_dino_processor(directory, words)
    config = tiny_grounding_dino_config(len(processor.tokenizer), **config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(config)
    return model.eval(), processor


def save_tiny_grounding_dino(
    directory: str | Path, seed: int = 0, words: Iterable[str] = ()
) -> Path:
    """Save a tiny model and its processor with ``save_pretrained`` into ``directory``.

    The result loads with ``GroundingDinoDetector.from_pretrained(directory)`` offline, like a
    checkpoint fetched by ``grounded-sam download``.
    """
    import tempfile

    directory = Path(directory)
    with tempfile.TemporaryDirectory() as vocab_dir:
        model, processor = tiny_grounding_dino(vocab_dir, seed=seed, words=words)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
