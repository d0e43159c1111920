"""File helpers of the exporters: atomic writes and safe output paths.

Atomic writes: a reader (or a resumed run) sees the old file or the new one, never half.

The bytes go to a temporary file in the destination's folder, are flushed to disk, and the
temporary file is renamed over the destination with ``os.replace`` (atomic on POSIX and
Windows when both paths are on one file system). A process killed mid-write leaves at most a
stray ``.tmp`` file beside the destination, which the next write replaces.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parent folders are created). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically. Returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def relative_output_path(file_name: str, suffix: str) -> Path:
    """The per-image output path for ``file_name`` with its suffix replaced, e.g.
    ``"sub/img1.jpg"`` -> ``sub/img1.txt``. Sub-folders are kept so that two images with the same
    name in different folders do not overwrite each other's labels.

    Raises:
        ValueError: ``file_name`` is empty, absolute or climbs out with ``..``.
    """
    text = str(file_name).replace("\\", "/")
    if not text or PurePosixPath(text).is_absolute() or PureWindowsPath(str(file_name)).anchor:
        raise ValueError(
            f"image file name {file_name!r} must be a non-empty path relative to the dataset "
            f"root (e.g. 'img1.jpg' or 'sub/img1.jpg')"
        )
    parts = PurePosixPath(text).parts
    if ".." in parts:
        raise ValueError(f"image file name {file_name!r} must not contain '..'")
    return Path(*parts).with_suffix(suffix)
