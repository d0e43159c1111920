"""The tokenizer of an original Grounding DINO checkpoint: bert-base-uncased's, from local files.

The original ``.pth`` files hold BERT's weights but not its vocabulary; the original code
fetches ``bert-base-uncased`` from the Hugging Face hub at run time. Here it comes from a
folder: one you name, or the registry's ``bert_base_uncased_tokenizer`` (``vocab.txt``,
``tokenizer.json`` … — the files the transformers-format Grounding DINO repositories ship),
which ``grounded-sam download`` puts in ``<models>/bert-base-uncased-tokenizer/`` and which
the original checkpoints' registry entries fetch along with the weights. Nothing downloads
here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from grounded_sam.errors import CheckpointError, MissingCheckpointError

TOKENIZER_ENTRY = "bert_base_uncased_tokenizer"
TOKENIZER_FOLDER = "bert-base-uncased-tokenizer"
# Either file is enough for a fast BERT tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
# Ids Grounding DINO's model hard-codes (bert-base-uncased's): [CLS], [SEP], ".", "?".
SPECIAL_IDS = {"[CLS]": 101, "[SEP]": 102, ".": 1012, "?": 1029}


def _has_tokenizer(folder: Path) -> bool:
    return folder.is_dir() and any((folder / n).is_file() for n in TOKENIZER_FILES)


def tokenizer_folder(
    text_encoder: str | Path | None,
    *,
    checkpoint: str | Path | None = None,
    models_dir: str | Path | None = None,
) -> Path:
    """The folder to read the tokenizer from.

    Args:
        text_encoder: a folder holding ``vocab.txt`` or ``tokenizer.json`` (a bert-base-uncased
            folder, a transformers-format Grounding DINO folder such as
            ``models/grounding-dino-tiny``), or a registry name; ``None``: the registry's
            tokenizer folder in the models folder, else ``bert-base-uncased-tokenizer/`` beside
            ``checkpoint``.
        checkpoint: the original ``.pth`` file, for the second default.
        models_dir: the models folder (default ``$GROUNDED_SAM_MODELS`` or ``./models``).

    Raises:
        MissingCheckpointError: no such folder or no tokenizer file in it; the message names
            the files needed and ``grounded-sam download bert_base_uncased_tokenizer``.
    """
    from grounded_sam.models.registry import REGISTRY, get_entry, model_path

    candidates: list[Path] = []
    if text_encoder is None:
        candidates.append(model_path(TOKENIZER_ENTRY, models_dir))
        if checkpoint is not None:
            candidates.append(Path(checkpoint).expanduser().parent / TOKENIZER_FOLDER)
    elif str(text_encoder).lower().replace("-", "_") in REGISTRY:
        candidates.append(model_path(get_entry(str(text_encoder)), models_dir))
    else:
        candidates.append(Path(text_encoder).expanduser())
    for folder in candidates:
        if _has_tokenizer(folder):
            return folder
    where = " or ".join(str(c) for c in candidates)
    raise MissingCheckpointError(
        candidates[0],
        TOKENIZER_ENTRY,
        hint=(
            "an original Grounding DINO checkpoint holds no tokenizer; it needs "
            f"bert-base-uncased's {' or '.join(TOKENIZER_FILES)}, not found in {where}. "
            f"Fetch it with `grounded-sam download {TOKENIZER_ENTRY}` (0.9 MiB), or pass "
            "text_encoder= a folder that holds it (e.g. models/grounding-dino-tiny)"
        ),
    )


def load_tokenizer(folder: str | Path, *, vocab_rows: int | None = None) -> Any:
    """A fast BERT tokenizer from ``folder``, checked against what Grounding DINO assumes.

    Args:
        folder: holds ``tokenizer.json`` and/or ``vocab.txt`` (lower-casing, as
            bert-base-uncased).
        vocab_rows: rows of the checkpoint's word-embedding table; the vocabulary may not
            be larger.

    Raises:
        CheckpointError: the special tokens are not at bert-base-uncased's ids, or the
            vocabulary is larger than the checkpoint's embedding table.
    """
    from transformers import BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    ids = dict(zip(SPECIAL_IDS, tokenizer.convert_tokens_to_ids(list(SPECIAL_IDS)), strict=True))
    if ids != SPECIAL_IDS:
        raise CheckpointError(
            f"the tokenizer in {folder} is not bert-base-uncased's: Grounding DINO needs "
            f"{SPECIAL_IDS}, it has {ids}; use `grounded-sam download {TOKENIZER_ENTRY}`"
        )
    if vocab_rows is not None and len(tokenizer) > vocab_rows:
        raise CheckpointError(
            f"the tokenizer in {folder} has {len(tokenizer)} tokens but the checkpoint embeds "
            f"{vocab_rows}; it belongs to another text encoder"
        )
    return tokenizer


def original_processor(tokenizer: Any, image_processor: Any = None) -> Any:
    """A ``GroundingDinoProcessor`` with the original code's image transform: resize to a
    short side of 800 (long side at most 1333), ImageNet mean/std normalisation."""
    from transformers import GroundingDinoImageProcessor, GroundingDinoProcessor

    if image_processor is None:
        image_processor = GroundingDinoImageProcessor(
            size={"shortest_edge": 800, "longest_edge": 1333}
        )
    return GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer)
