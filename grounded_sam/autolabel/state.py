"""Per-image results on disk: ``out_dir/.state/``, written atomically, checked on resume.

- ``config.json`` — what produces the results (prompt, classes, pipeline settings). A run
  into a folder made with another configuration is refused (:class:`ConfigMismatchError`).
- ``<image key>.json`` — one record per image, written last, when the image and its per-image
  exports are finished: ``{"version", "file_name", "path", "stat", "status": "ok"|"error",
  "detections" | "reason"}``. A record on disk means that image is done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grounded_sam.autolabel.sources import ImageItem
from grounded_sam.errors import GroundedSamError

STATE_DIR = ".state"
STATE_VERSION = 1


class ConfigMismatchError(GroundedSamError, RuntimeError):
    """``out_dir`` holds results of another configuration (prompt, classes, thresholds …)."""


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as sorted JSON + newline to ``path`` atomically."""
    from grounded_sam.export._io import atomic_write_text

    atomic_write_text(path, json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: Path) -> Any:
    """The JSON in ``path``, or ``None`` when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def prepare_state(state: Path, config: dict[str, Any]) -> None:
    """Create ``state`` for ``config``, or check that the one there was made with ``config``.

    Raises:
        ConfigMismatchError: ``state`` was made with another configuration; the message
            lists what changed.
    """
    path = state / "config.json"
    previous = read_json(path) if path.exists() else None
    if previous is not None:
        canonical = json.loads(json.dumps(config, sort_keys=True))
        if previous != canonical:
            old, new = _flatten(previous), _flatten(canonical)
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            details = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:6])
            raise ConfigMismatchError(
                f"{state.parent} holds results of another configuration ({details}). Use a new "
                f"output folder, or pass overwrite=True (`--overwrite`) to discard them."
            )
        return
    state.mkdir(parents=True, exist_ok=True)
    write_json(path, config)


def file_stat(path: Path) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of ``path``, or ``None`` when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def record_path(state: Path, item: ImageItem) -> Path:
    return state / f"{item.key}.json"


def new_record(item: ImageItem) -> dict[str, Any]:
    """The fields every record has; the run adds ``status`` and the result."""
    return {
        "version": STATE_VERSION,
        "file_name": item.file_name,
        "path": str(item.path),
        "stat": list(file_stat(item.path) or ()),
    }


def is_done(state: Path, item: ImageItem) -> bool:
    """Whether an earlier run labelled ``item`` as it is on disk now (same size and mtime)."""
    record = read_json(record_path(state, item))
    return (
        isinstance(record, dict)
        and record.get("version") == STATE_VERSION
        and record.get("status") == "ok"
        and record.get("file_name") == item.file_name
        and record.get("stat") == list(file_stat(item.path) or ())
    )
