"""Fetch registry checkpoints: the ONLY code in this package that touches the network.

``grounded-sam download NAME`` calls :func:`download`, which for each file of the model

1. says what it fetches (URL, size, destination),
2. fetches it with ``torch.hub.download_url_to_file`` (a temporary file, a tqdm progress
   bar) into a temporary file beside the destination,
3. checks the size and the sha256 (a mismatch deletes the temporary file and raises
   :class:`DownloadError` / :class:`ChecksumError` with both values; a file the registry has
   no hash for is kept and its computed hash printed as unverified),
4. renames the temporary file into place (atomic: no half-written checkpoint is ever seen
   under the final name).

Offline or on any HTTP/URL error it raises :class:`DownloadError` naming the file, the URL and
how to place the file by hand. Resuming a partial download is not supported: a new attempt
starts over. :func:`ensure_models` is what the app's first run calls.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import urllib.error
from collections.abc import Callable, Iterable
from pathlib import Path

from grounded_sam.errors import GroundedSamError, MissingCheckpointError
from grounded_sam.models.registry import (
    ENV_VAR,
    ModelEntry,
    ModelFile,
    get_entry,
    missing_files,
    model_path,
)
from grounded_sam.models.registry import models_dir as resolve_models_dir

_CHUNK = 1 << 20  # 1 MiB
Log = Callable[[str], None]


class DownloadError(GroundedSamError, RuntimeError):
    """A file could not be fetched (offline, HTTP error, truncated transfer)."""


class ChecksumError(DownloadError):
    """A fetched file's sha256 (or size) is not the registry's; nothing was kept."""

    def __init__(self, message: str, expected: str, actual: str):
        self.expected = expected
        self.actual = actual
        super().__init__(message)


class ModelsMissingError(MissingCheckpointError):
    """Model files are not on disk and downloading was not allowed.

    ``missing`` maps each model name to its missing paths; the message lists every file and
    the ``grounded-sam download NAME`` commands that fetch them.
    """

    def __init__(self, missing: dict[str, list[Path]], root: Path):
        self.missing = missing
        self.path = next(p for paths in missing.values() for p in paths)
        self.name = next(iter(missing))
        lines = [f"model files missing under {root}:"]
        for name, paths in missing.items():
            lines += [f"  {name}: {p}" for p in paths]
        lines.append("fetch them with:")
        lines += [f"  grounded-sam download {name}" for name in missing]
        lines.append(
            f"(or copy the files there by hand, see models/README.md; set {ENV_VAR} to use "
            f"another models folder)"
        )
        # skip MissingCheckpointError's one-file message, keep its type
        super(MissingCheckpointError, self).__init__("\n".join(lines))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def human_size(n: int | None) -> str:
    """``375042383`` -> ``"357.7 MiB"``; None -> ``"unknown size"``."""
    if n is None:
        return "unknown size"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _manual_hint(file: ModelFile, dest: Path) -> str:
    sha = f" (sha256 {file.sha256})" if file.sha256 else ""
    return (
        f"To install it by hand, fetch {file.url} on a machine with internet access and copy "
        f"it to {dest}{sha}; or set {ENV_VAR} to a folder that already holds the models."
    )


def fetch_file(
    file: ModelFile,
    dest: str | Path,
    *,
    name: str = "",
    progress: bool = True,
    log: Log = _stderr,
) -> Path:
    """Download one file to ``dest`` (see the module docstring). Returns ``dest``.

    The transfer is ``torch.hub.download_url_to_file`` (its own temporary file, tqdm progress
    on stderr); the registry's size and sha256 are checked on the result before it is renamed
    into place. torch.hub sets no socket timeout: a server that stops answering mid-transfer
    waits until interrupted (Ctrl-C leaves no partial file).

    Raises:
        DownloadError: the URL cannot be reached or answers with an error, or the file has
            another size than the registry's.
        ChecksumError: the sha256 is not the registry's (the file is not kept).
    """
    import torch.hub

    from grounded_sam.export._io import open_temp_beside

    dest = Path(dest)
    what = f"{dest.name} of {name}" if name else dest.name
    log(f"Downloading {what}\n  from {file.url}\n  size {human_size(file.size)}\n  to   {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = open_temp_beside(dest, suffix=".part")  # a unique name beside dest
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            torch.hub.download_url_to_file(file.url, str(tmp), progress=progress)
        except urllib.error.HTTPError as e:
            raise DownloadError(
                f"cannot download {what}: {file.url} answered HTTP {e.code} {e.reason}. "
                + _manual_hint(file, dest)
            ) from e
        except urllib.error.URLError as e:
            raise DownloadError(
                f"cannot download {what}: {file.url} cannot be reached ({e.reason}); is "
                f"this machine offline? " + _manual_hint(file, dest)
            ) from e
        except (OSError, http.client.HTTPException) as e:  # cut mid-transfer, a full disk
            raise DownloadError(
                f"cannot download {what} from {file.url}: {type(e).__name__}: {e}. "
                + _manual_hint(file, dest)
            ) from e
        received = tmp.stat().st_size
        if file.size is not None and received != file.size:
            raise DownloadError(
                f"download of {what} from {file.url} gave {received} bytes but the registry "
                f"expects {file.size}: the transfer was cut short or the server has another "
                f"file; run the command again. " + _manual_hint(file, dest)
            )
        # hashed here rather than by torch.hub's hash_prefix, so that a mismatch can name the
        # hash received and a file without a registry hash can print its own
        actual = sha256_file(tmp)
        if file.sha256 is not None and actual != file.sha256.lower():
            raise ChecksumError(
                f"sha256 mismatch for {what} from {file.url}: expected {file.sha256}, got "
                f"{actual}; the file was deleted. Run the command again; if it keeps "
                f"failing, the file on the server has changed.",
                expected=file.sha256,
                actual=actual,
            )
        if file.sha256 is None:
            log(f"  sha256 {actual} (unverified: the registry has no checksum for this file)")
        else:
            log(f"  sha256 verified ({actual[:12]}…)")
        with open(tmp, "rb") as f:  # on disk before it gets the final name
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def download(
    name: str | ModelEntry,
    *,
    models_dir: str | Path | None = None,
    progress: bool = True,
    force: bool = False,
    log: Log = _stderr,
) -> Path:
    """Fetch every file of a registry model into the models folder; returns :func:`model_path`.

    A file already in place is checked by size and sha256 (reading it: seconds per GB) and
    kept when both match the registry's (say ``force=True`` to fetch it anyway); a file of
    another size or hash is reported and fetched again. ``models_dir`` defaults to
    ``$GROUNDED_SAM_MODELS`` or ``./models``.

    Raises:
        KeyError: an unknown model name.
        DownloadError / ChecksumError: see :func:`fetch_file`; when a damaged file in place
            cannot be replaced (offline), the message says what is wrong with it.
    """
    entry = get_entry(name)
    root = resolve_models_dir(models_dir)
    for file in entry.files:
        dest = root / file.path
        problem = None
        if dest.exists() and not force:
            problem = file_problem(file, dest)
            if problem is None:
                log(f"{entry.name}: {dest} is already present (size and sha256 verified)")
                continue
            log(f"{entry.name}: {problem}; fetching it again")
        try:
            fetch_file(file, dest, name=entry.name, progress=progress, log=log)
        except DownloadError as err:
            if problem is None:
                raise
            raise type(err)(
                f"{problem}, and it cannot be fetched again: {err}", *err.args[1:]
            ) from err
    return model_path(entry, root)


def file_problem(file: ModelFile, path: Path) -> str | None:
    """What is wrong with ``path`` as the registry's ``file`` (size, then sha256), or None.

    Reads the whole file when the registry has its sha256.
    """
    if not path.is_file():
        return f"{path} is not a regular file"
    size = path.stat().st_size
    if file.size is not None and size != file.size:
        return f"{path} is corrupt: {size} bytes, expected {file.size} (truncated or replaced)"
    if file.sha256 is not None and (actual := sha256_file(path)) != file.sha256:
        return f"{path} is corrupt: sha256 {actual}, expected {file.sha256}"
    return None


def verify(name: str | ModelEntry, models_dir: str | Path | None = None) -> list[str]:
    """Check the files of a model on disk by size and sha256 (reads every byte).

    Returns a list of problems, one line each (empty when all files are present and match;
    files without a registry hash are only checked for presence and size).
    """
    entry = get_entry(name)
    root = resolve_models_dir(models_dir)
    problems = []
    for file in entry.files:
        path = root / file.path
        if not path.exists():
            problems.append(f"{path}: missing")
        elif (problem := file_problem(file, path)) is not None:
            problems.append(problem)
    return problems


def ensure_models(
    names: Iterable[str | ModelEntry],
    *,
    download: bool = False,
    models_dir: str | Path | None = None,
    progress: bool = True,
    log: Log = _stderr,
) -> dict[str, Path]:
    """Make sure the named models are on disk; returns ``{name: model_path}``.

    With ``download=True`` missing files are fetched (the app's first run); without,
    missing files raise :class:`ModelsMissingError`, which lists exactly the missing files and
    the ``grounded-sam download NAME`` commands.
    """
    entries = [get_entry(n) for n in names]
    root = resolve_models_dir(models_dir)
    missing = {e.name: paths for e in entries if (paths := missing_files(e, root))}
    if missing and not download:
        raise ModelsMissingError(missing, root)
    for e in entries:
        if e.name in missing:
            _download(e, models_dir=root, progress=progress, log=log)
    return {e.name: model_path(e, root) for e in entries}


_download = download  # ensure_models' ``download`` flag shadows the function's name
