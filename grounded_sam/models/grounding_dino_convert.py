"""Convert an original Grounding DINO ``.pth`` once into a folder ``from_pretrained`` reads.

``grounded-sam convert grounding-dino IN.pth OUT_DIR`` calls :func:`convert_original`: the
checkpoint is mapped onto transformers' ``GroundingDinoForObjectDetection``
(:mod:`grounded_sam.models.grounding_dino_original`, strict) and saved with its processor —
``config.json``, ``model.safetensors``, ``preprocessor_config.json``/``processor_config.json``
and the tokenizer files — so later loads skip the conversion and need no separate tokenizer.
The folder is written beside ``OUT_DIR`` under a temporary name and renamed into place: a
killed run leaves no half-written model under the final name.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any


def convert_original(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    config: Any = None,
    text_encoder: str | Path | None = None,
    models_dir: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the transformers-format folder of an original checkpoint; return its path.

    Args:
        checkpoint: ``groundingdino_swint_ogc.pth`` or another original state dict.
        out_dir: the folder to create (its parent must exist).
        config, text_encoder, models_dir: as in
            :meth:`~grounded_sam.detectors.grounding_dino.GroundingDinoDetector.from_original`.
        overwrite: replace an existing ``out_dir``; otherwise that is an error.

    Raises:
        FileExistsError: ``out_dir`` exists and ``overwrite`` is false.
        MissingCheckpointError, CheckpointError: as ``from_original``.
    """
    from grounded_sam.models.grounding_dino_original import load_original
    from grounded_sam.models.grounding_dino_text import (
        load_tokenizer,
        original_processor,
        tokenizer_folder,
    )

    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; choose another folder or pass --overwrite")
    if not out_dir.parent.is_dir():
        raise FileNotFoundError(f"the parent folder of {out_dir} does not exist; create it")
    folder = tokenizer_folder(text_encoder, checkpoint=checkpoint, models_dir=models_dir)
    model = load_original(Path(checkpoint).expanduser(), config)
    tokenizer = load_tokenizer(folder, vocab_rows=model.config.text_config.vocab_size)
    processor = original_processor(tokenizer)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
