"""Strict checkpoint loading: safe unpickling, every key accounted for, clear errors.

``torch.load(..., weights_only=True)`` refuses to run code hidden in a pickle; the state dict
must then fit the module exactly (no missing keys, no unexpected keys, equal shapes). A
mismatch names the keys, so a wrong ``model_type`` or a truncated download is obvious.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grounded_sam.errors import CheckpointError, MissingCheckpointError

if TYPE_CHECKING:  # pragma: no cover
    import torch

# Containers that wrap the weights in common checkpoint layouts, tried in this order.
_WRAPPER_KEYS = ("model", "state_dict")
_SHOW = 10  # how many keys an error message lists


def _list_keys(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_SHOW])
    more = f" … and {len(keys) - _SHOW} more" if len(keys) > _SHOW else ""
    return f"{len(keys)}: {shown}{more}"


def read_state_dict(path: str | Path, *, name: str | None = None) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` on the CPU with ``weights_only=True``.

    Accepts a raw state dict (``{param_name: tensor}``) or a dict that holds one under
    ``"model"`` or ``"state_dict"``.

    Raises:
        MissingCheckpointError: the file does not exist (the message names the file and, when
            ``name`` is given, ``grounded-sam download NAME``).
        CheckpointError: the file cannot be unpickled safely or holds no state dict.
    """
    import torch

    path = Path(path).expanduser()
    if not path.exists():
        raise MissingCheckpointError(path, name=name)
    if path.is_dir():
        raise CheckpointError(f"checkpoint path {path} is a directory; pass the weights file")
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated download, not a torch file, unsafe pickle …
        again = f"; fetch it again with `grounded-sam download {name}`" if name else ""
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}{again}"
        ) from exc
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(
            f"checkpoint {path} holds no state dict: expected {{name: tensor}} or a dict with a "
            f"'model' or 'state_dict' entry, got {type(obj).__name__}"
        )
    return dict(obj)


def check_state_dict(
    module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str = "checkpoint"
) -> None:
    """Raise :class:`CheckpointError` unless ``state_dict`` fits ``module`` key for key and shape for shape."""
    expected = module.state_dict()
    missing = set(expected) - set(state_dict)
    unexpected = set(state_dict) - set(expected)
    shapes = {
        k: (tuple(state_dict[k].shape), tuple(expected[k].shape))
        for k in set(expected) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    }
    if not (missing or unexpected or shapes):
        return
    problems = []
    if missing:
        problems.append(f"missing keys ({_list_keys(missing)})")
    if unexpected:
        problems.append(f"unexpected keys ({_list_keys(unexpected)})")
    if shapes:
        items = [f"{k} {shapes[k][0]} != {shapes[k][1]}" for k in sorted(shapes)]
        more = f" … and {len(items) - _SHOW} more" if len(items) > _SHOW else ""
        problems.append(
            f"shape mismatches, checkpoint vs model ({len(items)}: {', '.join(items[:_SHOW])}{more})"
        )
    raise CheckpointError(
        f"{source} does not fit {type(module).__name__}: "
        + "; ".join(problems)
        + ". Is it the checkpoint of another model type or size?"
    )


def load_state_dict_strict(
    module: torch.nn.Module, path: str | Path, *, name: str | None = None
) -> torch.nn.Module:
    """Load the weights at ``path`` into ``module`` in place; every key must fit exactly.

    Args:
        module: the built model (any device; tensors are copied onto its parameters).
        path: a ``.pth``/``.pt`` file: a raw state dict or a dict with ``"model"`` or
            ``"state_dict"``. Read with ``map_location="cpu", weights_only=True``.
        name: the registry name of the checkpoint, used in error messages to say how to
            fetch it (``grounded-sam download NAME``).

    Returns:
        ``module`` itself.

    Raises:
        MissingCheckpointError: ``path`` does not exist.
        CheckpointError: unreadable file, or missing/unexpected keys or shape mismatches
            (the first 10 of each are listed, with the count).
    """
    state_dict = read_state_dict(path, name=name)
    check_state_dict(module, state_dict, source=f"checkpoint {Path(path)}")
    module.load_state_dict(state_dict, strict=True)
    return module
