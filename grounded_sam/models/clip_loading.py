"""open_clip models from LOCAL weights: find the checkpoint on disk, never download.

A CLIP model is named by an open_clip architecture (``"ViT-B-32"``) and a ``pretrained``
value: a checkpoint file, or an open_clip pretrained tag (``"laion2b_s34b_b79k"``,
``"openai"``…) whose weights must already be on this machine. :func:`find_clip_checkpoint`
looks, in order, where ``grounded-sam download`` puts them (the models folder of
:mod:`grounded_sam.models.registry`), in open_clip's URL cache and in the Hugging Face cache;
:func:`load_clip` builds the model with the tag's preprocessing and activation.
``open_clip`` and ``huggingface_hub`` are imported inside the functions.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from grounded_sam.errors import CheckpointError, MissingCheckpointError

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    import torch


class LoadedClip(NamedTuple):
    """What :func:`load_clip` returns.

    Attributes:
        model: the open_clip model, in eval mode on the requested device.
        preprocess: PIL RGB image -> float tensor (3, S, S) (open_clip's eval transform).
        tokenizer: list[str] -> int tensor (T, L) (``open_clip.get_tokenizer(model_name)``).
        model_id: ``"<architecture>/<tag or file name>"``, e.g. ``"ViT-B-32/laion2b_s34b_b79k"``.
    """

    model: Any
    preprocess: Callable[[Any], Any]
    tokenizer: Callable[[list[str]], Any]
    model_id: str


def load_clip(
    model_name: str = "ViT-B-32",
    pretrained: str | os.PathLike = "laion2b_s34b_b79k",
    *,
    device: str | torch.device = "cpu",
    models_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> LoadedClip:
    """Build an open_clip model from LOCAL weights; never downloads.

    Args:
        model_name: an open_clip architecture (``"ViT-B-32"``), or a CLIP entry of
            ``grounded_sam.models.registry`` (``"clip_vit_b32"``: architecture and tag come
            from the entry).
        pretrained: a checkpoint file or an open_clip pretrained tag, looked up by
            :func:`find_clip_checkpoint`. A tag's preprocessing (mean, std, interpolation,
            resize mode) and activation (QuickGELU) are applied.
        device: where the model runs.
        models_dir: the models folder (default ``$GROUNDED_SAM_MODELS`` or ``./models``).
        cache_dir: open_clip's / Hugging Face's cache folder (default: their own).

    Raises:
        MissingCheckpointError: the weights are not on disk; the message names the file and
            the ``grounded-sam download`` command (or the page) that provides them.
        ValueError: ``pretrained`` is neither a file nor a tag open_clip knows.
        CheckpointError: the file cannot be loaded (an unsafe pickle, a damaged file, the
            weights of another architecture); the message names the file.
    """
    import open_clip

    from grounded_sam.models import registry

    try:
        entry = registry.get_entry(model_name)
    except KeyError:
        entry = None
    if entry is not None and entry.kind == "clip":
        model_name = str(entry.builder["model_name"])
        pretrained = str(entry.builder["pretrained_tag"])
    path, tag_cfg = find_clip_checkpoint(model_name, pretrained, models_dir, cache_dir)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name,
            pretrained=str(path),
            device=device,
            force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
            image_mean=tag_cfg.get("mean"),
            image_std=tag_cfg.get("std"),
            image_interpolation=tag_cfg.get("interpolation"),
            image_resize_mode=tag_cfg.get("resize_mode"),
        )
    except (pickle.UnpicklingError, EOFError, RuntimeError, KeyError) as exc:
        # a pickle that would run code (refused by weights_only loading), a truncated or
        # foreign file, weights of another architecture
        raise CheckpointError(
            f"cannot load CLIP weights {path} as {model_name}: {type(exc).__name__}: "
            f"{str(exc)[:500]}. Use a file you trust for this architecture "
            "(`grounded-sam download --list` lists the known ones)"
        ) from exc
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    model_id = f"{model_name}/{Path(os.fspath(pretrained)).name}"
    return LoadedClip(model, preprocess, tokenizer, model_id)


def find_clip_checkpoint(
    model_name: str,
    pretrained: str | os.PathLike,
    models_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Path, dict[str, Any]]:
    """The local weights file for ``pretrained`` (a path or an open_clip tag) and the tag's
    open_clip config (``{}`` for a plain file). Looks only at the disk.

    Args:
        model_name: an open_clip architecture, e.g. ``"ViT-B-32"``.
        pretrained: a checkpoint file, or an open_clip pretrained tag of ``model_name``. A
            file that the registry lists for ``model_name`` keeps its tag's config.
        models_dir: where ``grounded-sam download`` puts files (searched first for a tag).
        cache_dir: open_clip's URL cache (default ``~/.cache/clip``) and Hugging Face's
            cache (default: its own) are searched next.

    Raises:
        MissingCheckpointError: not on disk; names the file and ``grounded-sam download NAME``
            when the registry lists the tag, else the page to fetch it from by hand.
        ValueError: ``pretrained`` is neither a file nor a tag open_clip knows.
    """
    import open_clip

    from grounded_sam.models import registry

    text = os.fspath(pretrained)
    if Path(text).expanduser().is_file():
        # A file the registry knows (e.g. passed by Pipeline.from_registry) keeps its tag's
        # preprocessing and activation; any other file gets open_clip's defaults.
        for e in registry.REGISTRY.values():
            if e.kind == "clip" and e.builder.get("model_name") == model_name:
                if Path(text).as_posix().endswith(e.path):
                    tag = str(e.builder.get("pretrained_tag", ""))
                    return Path(text).expanduser(), open_clip.get_pretrained_cfg(
                        model_name, tag
                    ) or {}
        return Path(text).expanduser(), {}
    tag_cfg = open_clip.get_pretrained_cfg(model_name, text) or {}
    if not tag_cfg:
        if isinstance(pretrained, os.PathLike) or any(c in text for c in "/\\."):
            raise MissingCheckpointError(Path(text), hint="check the CLIP checkpoint's path")
        raise ValueError(
            f"pretrained={text!r} is neither a file nor an open_clip tag of {model_name!r}; "
            f"known tags: {open_clip.list_pretrained_tags_by_model(model_name) or 'none'}"
        )

    # 1. where `grounded-sam download` puts it
    entries = [
        e
        for e in registry.REGISTRY.values()
        if e.kind == "clip"
        and e.builder.get("model_name") == model_name
        and e.builder.get("pretrained_tag") == text
    ]
    for e in entries:
        if registry.is_present(e, models_dir):
            return registry.model_path(e, models_dir), tag_cfg
    # 2. open_clip's own downloads: a URL file or a Hugging Face hub file
    hub_repo, hub_file = os.path.split(str(tag_cfg.get("hf_hub", "")))
    hub_files = (
        [hub_file] if hub_file else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    )
    url_file = os.path.basename(str(tag_cfg.get("url", "")))
    url_dir = Path(cache_dir) if cache_dir else Path("~/.cache/clip").expanduser()
    if url_file and (url_dir / url_file).is_file():
        return url_dir / url_file, tag_cfg
    if hub_repo:
        from huggingface_hub import try_to_load_from_cache

        for name in hub_files:
            found = try_to_load_from_cache(hub_repo, name, cache_dir=cache_dir)
            if isinstance(found, str) and os.path.isfile(found):
                return Path(found), tag_cfg

    if entries:
        e = entries[0]
        raise MissingCheckpointError(registry.model_path(e, models_dir), name=e.name)
    source = f"https://huggingface.co/{hub_repo}" if hub_repo else tag_cfg.get("url") or "?"
    raise MissingCheckpointError(
        url_dir / (url_file or hub_files[0]),
        hint=(
            f"the open_clip weights {model_name}/{text} are not on this machine and "
            f"`grounded-sam download` does not list them; download them from {source} and "
            "pass the file as pretrained="
        ),
    )
