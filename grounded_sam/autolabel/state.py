"""Per-image results on disk: ``out_dir/.state/``, written atomically, checked on resume.

- ``config.json`` — what produces the results (prompt, classes, pipeline settings). A run
  into a folder made with another configuration is refused (:class:`ConfigMismatchError`).
  It is created exclusively: of several processes starting at once (shards on a shared
  folder), one creates it and the others check theirs against it.
- ``<image key>.json`` — one record per image, written last, when the image and its per-image
  exports are finished: ``{"version", "config", "file_name", "path", "stat", "status":
  "ok"|"error", "detections" | "reason"}``, where ``config`` is the :func:`fingerprint` of the
  configuration that made it. A record on disk means that image is done.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
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


def canonical_json(config: dict[str, Any]) -> str:
    """``config`` as compact JSON with sorted keys: the same text for the same settings."""
    return json.dumps(config, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def fingerprint(config: dict[str, Any]) -> str:
    """The sha1 (hex) of :func:`canonical_json`; stored in every record and shard manifest."""
    return hashlib.sha1(canonical_json(config).encode("utf-8")).hexdigest()


def prepare_state(state: Path, config: dict[str, Any]) -> str:
    """Create ``state`` for ``config``, or check that the one there was made with ``config``.

    Returns:
        The configuration's :func:`fingerprint`.

    Raises:
        ConfigMismatchError: ``state`` was made with another configuration; the message
            lists what changed.
    """
    path = state / "config.json"
    canonical = json.loads(canonical_json(config))
    state.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _create_exclusively(path, json.dumps(canonical, sort_keys=True, ensure_ascii=False) + "\n")
    previous = _read_config(path)
    if previous != canonical:
        old, new = _flatten(previous), _flatten(canonical)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        details = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:6])
        raise ConfigMismatchError(
            f"{state.parent} holds results of another configuration ({details}). Use a new "
            f"output folder, or pass overwrite=True (`--overwrite`) to discard them (shards: "
            f"delete the folder once, before starting them all with the same arguments)."
        )
    return fingerprint(canonical)


def _create_exclusively(path: Path, text: str) -> None:
    """Create ``path`` with ``text`` unless it exists; whole or not at all. Of several
    processes racing, exactly one creates it (a hard link fails when the name exists)."""
    from grounded_sam.export._io import naming, open_temp_beside

    fd, tmp = open_temp_beside(path)
    try:
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # disk full: say which file
            raise naming(exc, path) from exc
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links: O_EXCL is still exclusive
            try:
                with open(path, "x", encoding="utf-8") as f:
                    f.write(text)
            except FileExistsError:
                pass
    finally:
        os.unlink(tmp)


def _read_config(path: Path, wait: float = 5.0) -> Any:
    """``config.json``; waits a little for a file another process is creating right now."""
    deadline = time.monotonic() + wait
    while (config := read_json(path)) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if config is None:
        raise ConfigMismatchError(
            f"cannot read {path}: it is not valid JSON. Delete it if no run into "
            f"{path.parent.parent} is starting right now, or use a new output folder."
        )
    return config


def file_stat(path: Path) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of ``path``, or ``None`` when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def record_path(state: Path, item: ImageItem) -> Path:
    return state / f"{item.key}.json"


def new_record(item: ImageItem, config: str) -> dict[str, Any]:
    """The fields every record has (``config``: the fingerprint); the run adds ``status`` and
    the result."""
    return {
        "version": STATE_VERSION,
        "config": config,
        "file_name": item.file_name,
        "path": str(item.path),
        "stat": list(file_stat(item.path) or ()),
    }


def is_done(state: Path, item: ImageItem, config: str) -> bool:
    """Whether an earlier run with the configuration whose fingerprint is ``config`` labelled
    ``item`` as it is on disk now (same size and mtime)."""
    record = read_json(record_path(state, item))
    return (
        isinstance(record, dict)
        and record.get("version") == STATE_VERSION
        and record.get("config") == config
        and record.get("status") == "ok"
        and record.get("file_name") == item.file_name
        and record.get("stat") == list(file_stat(item.path) or ())
    )
