"""Vocabularies longer than Grounding DINO's text limit: chunks of whole classes.

Grounding DINO reads at most ``max_text_len`` (256) tokens, ``[CLS]`` and ``[SEP]``
included; transformers silently drops the rest, so the classes at the end of a long prompt
are never seen. :func:`plan_chunks` packs whole classes into prompts that fit; the detector
runs one forward pass per chunk and maps class ids back to the full list.

The text must be fused with the image anew for every chunk (the encoder, decoder and heads
are all text-conditioned), but the Swin backbone is not: :func:`reuse_backbone` makes
the backbone run once per image within a ``with`` block. On a full-size Swin-T at 800x1333 on
CPU the backbone is about a fifth of one forward pass (19% of its CPU time, measured with
``benchmarks/bench_grounding_dino.py``), so each extra chunk costs about 0.8 of a forward.
"""

from __future__ import annotations

import types
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from grounded_sam.errors import PromptError

# Per-call cache of backbone outputs; a ContextVar so two threads (or two requests) sharing
# one model never see each other's image.
_BACKBONE_CACHE: ContextVar[dict | None] = ContextVar("grounding_dino_backbone_cache", default=None)


def count_class_tokens(tokenizer: Any, names: Sequence[str]) -> list[int]:
    """Number of tokens of each class name, without special tokens or the ``"."`` after it."""
    if not names:
        return []
    enc = tokenizer(list(names), add_special_tokens=False)
    return [len(ids) for ids in enc["input_ids"]]


def plan_chunks(
    class_ids: Sequence[int], token_counts: Sequence[int], max_text_len: int
) -> list[list[int]]:
    """Pack classes, in order, into chunks whose prompt fits ``max_text_len`` tokens.

    A chunk's prompt ``"a . b ."`` costs ``2`` (``[CLS]``, ``[SEP]``) plus, per class, its
    tokens and one ``"."``.

    Args:
        class_ids: the class id of each class to place (ids into the full class list).
        token_counts: tokens of each class's name (:func:`count_class_tokens`), same order.
        max_text_len: the model's ``config.max_text_len``.

    Returns:
        Lists of class ids; every id appears in exactly one chunk, in the given order.

    Raises:
        PromptError: one class alone is longer than the limit.
    """
    if len(class_ids) != len(token_counts):
        raise ValueError(f"{len(class_ids)} class ids but {len(token_counts)} token counts")
    budget = max_text_len - 2
    chunks: list[list[int]] = []
    used = budget + 1  # forces a new chunk for the first class
    for cid, n in zip(class_ids, token_counts, strict=True):
        cost = int(n) + 1
        if cost > budget:
            raise PromptError(
                f"class {cid} is {n} tokens long; Grounding DINO reads at most {max_text_len} "
                "tokens per prompt (2 special tokens and a '.' included); shorten the name"
            )
        if used + cost > budget:
            chunks.append([])
            used = 0
        chunks[-1].append(int(cid))
        used += cost
    return chunks


def _find_backbone(model: Any) -> Any:
    import torch

    backbone = getattr(getattr(model, "model", None), "backbone", None)
    return backbone if isinstance(backbone, torch.nn.Module) else None


def _caching_forward(self: Any, pixel_values: Any, pixel_mask: Any, *args: Any, **kwargs: Any):
    cache = _BACKBONE_CACHE.get()
    original = type(self).forward
    if cache is None or args or kwargs:
        return original(self, pixel_values, pixel_mask, *args, **kwargs)
    key = (id(self), pixel_values.data_ptr(), tuple(pixel_values.shape), pixel_values.dtype)
    if key not in cache:
        # keep the inputs alive so their data_ptr cannot be reused within the block
        cache[key] = (pixel_values, original(self, pixel_values, pixel_mask))
    features, positions = cache[key][1]
    # fresh lists: GroundingDinoModel appends the extra feature levels to them
    return [tuple(f) for f in features], list(positions)


@contextmanager
def reuse_backbone(model: Any) -> Iterator[None]:
    """Within the block, ``model``'s vision backbone runs once per distinct pixel tensor.

    Works with transformers' ``GroundingDinoForObjectDetection`` (``model.model.backbone``);
    for anything else it does nothing. The first use gives the backbone module an instance
    ``forward`` that consults a context-local cache and otherwise calls the class's own
    forward, so outside the block, in other threads and in deep copies the model behaves exactly
    as before.
    """
    backbone = _find_backbone(model)
    if backbone is None:
        yield
        return
    current = backbone.__dict__.get("forward")
    if getattr(current, "__func__", None) is not _caching_forward:
        # a bound method, not a closure, so copy.deepcopy re-binds it to the copy
        backbone.forward = types.MethodType(_caching_forward, backbone)
    token = _BACKBONE_CACHE.set({})
    try:
        yield
    finally:
        _BACKBONE_CACHE.reset(token)
