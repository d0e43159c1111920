"""File helpers of the exporters: atomic writes and safe output paths.

Atomic writes: a reader (or a resumed run) sees the old file or the new one, never half.

The bytes go to a temporary file in the destination's folder, are flushed to disk, and the
temporary file is renamed over the destination with ``os.replace`` (atomic on POSIX and
Windows when both paths are on one file system). A process killed mid-write leaves at most a
stray ``.tmp`` file beside the destination, which the next write replaces.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path, PurePosixPath, PureWindowsPath


def open_temp_beside(path: Path, suffix: str = ".tmp") -> tuple[int, str]:
    """A new temporary file in ``path``'s folder, opened for writing: ``(fd, name)``.

    Like ``tempfile.mkstemp`` (a random name, created exclusively), but with the permissions
    of any new file (``0o666`` minus the umask, usually 0644) instead of 0600, so the file
    renamed into place is readable as the user expects.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = str(path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (parent folders are created). Returns the path.

    A file that already holds exactly ``data`` is left alone (not rewritten), so a finished
    output can be checked again on a read-only mount. New files get the usual permissions
    (``0o666`` minus the umask). An ``OSError`` (disk full, read-only, permission) names
    ``path``.
    """
    path = Path(path)
    if _holds(path, data):
        return path
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = open_temp_beside(path)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        if isinstance(exc, OSError):
            raise naming(exc, path) from exc
        raise
    return path


def naming(exc: OSError, path: Path) -> OSError:
    """``exc`` itself when it names a file, else the same error (errno kept) naming ``path``:
    "[Errno 28] No space left on device (writing out/x.json): 'out/x.json'"."""
    if exc.filename is not None:
        return exc
    return type(exc)(exc.errno, f"{exc.strerror or exc} (writing {path})", str(path))


def _holds(path: Path, data: bytes) -> bool:
    """True when ``path`` is a file whose bytes are ``data`` (size compared first)."""
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False


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
