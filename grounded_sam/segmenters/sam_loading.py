"""Build a segment_anything ``Sam`` and load its checkpoint strictly (``SamSegmenter.from_checkpoint``).

The architecture comes from segment_anything's ``sam_model_registry`` (built without
weights) or from a caller's builder; the weights go through
:func:`grounded_sam.models.loading.load_state_dict_strict`. segment_anything and torch are
imported inside the function.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from grounded_sam.errors import MissingCheckpointError
from grounded_sam.models.registry import SAM_MODEL_TYPES as SAM_MODEL_TYPES  # the one list

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from segment_anything.modeling import Sam


def build_sam(
    model_type: str,
    path: str | Path,
    *,
    builder: Callable[[], Sam] | None = None,
    name: str | None = None,
) -> Sam:
    """SAM ``model_type`` (``"vit_h"``, ``"vit_l"``, ``"vit_b"``) with the weights at ``path``.

    The weights are read on the CPU with ``weights_only=True`` and every key must fit; the
    model stays on the CPU, in eval mode. ``builder``: a zero-argument function that returns
    an unloaded ``Sam`` of another configuration; ``model_type`` then only names it.
    ``name``: the download name shown in errors (default ``sam_<model_type>``).

    Raises:
        MissingCheckpointError: ``path`` does not exist (checked before building).
        CheckpointError: the file does not fit the architecture (keys/shapes listed).
        ValueError: unknown ``model_type`` and no ``builder``.
    """
    from grounded_sam.models.loading import load_state_dict_strict

    if builder is None:
        if model_type not in SAM_MODEL_TYPES:
            raise ValueError(
                f"unknown SAM model_type {model_type!r}; expected one of {SAM_MODEL_TYPES} "
                "(or pass builder=...)"
            )
        from segment_anything import sam_model_registry

        def builder() -> Sam:
            return sam_model_registry[model_type](checkpoint=None)

    name = name or f"sam_{model_type}"
    if not Path(path).expanduser().exists():  # fail before building a large model
        raise MissingCheckpointError(Path(path).expanduser(), name=name)
    sam = builder()
    load_state_dict_strict(sam, path, name=name)
    return sam.eval()
