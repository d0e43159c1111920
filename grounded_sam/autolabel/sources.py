"""The inputs of a labelling run: a folder, a glob pattern or a list of paths, as ``ImageItem``s.

Every image gets a ``file_name`` relative to the dataset root (posix, as written into the
exports) and a ``key`` derived from it alone, so the same image has the same key whatever the
listing order, the machine, or where the dataset is mounted.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)


@dataclass(frozen=True)
class ImageItem:
    """One input image: ``path`` on disk, ``file_name`` relative to the dataset root (posix,
    as written into the exports) and ``key``, a stable name for its state file."""

    path: Path
    file_name: str
    refused: str | None = None  # why it is not opened (a symlink out of the input folder)

    @property
    def key(self) -> str:
        return hashlib.sha1(self.file_name.encode("utf-8")).hexdigest()[:20]


def list_images(
    images: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    exclude: str | os.PathLike | None = None,
    follow_symlinks: bool = False,
) -> list[ImageItem]:
    """The images of a folder (recursive, by extension), a glob pattern or a list of paths.

    ``file_name`` is relative to the folder, or to the deepest folder that holds every match
    or listed path. Files under ``exclude`` (the output folder) and hidden folders are left out.
    The result is sorted by ``file_name``; listed paths that do not exist are kept (they are
    reported as skipped when labelled).

    In a folder, a symbolic link whose target lies outside the folder is listed but not
    opened (``refused`` says why; it is reported as skipped) unless ``follow_symlinks``.
    Links that stay inside the folder are followed. Globs and lists name their files
    explicitly and are followed.

    Raises:
        FileNotFoundError: nothing matched.
    """
    excluded = Path(exclude).resolve() if exclude is not None else None

    def keep(p: Path) -> bool:
        return excluded is None or not (p == excluded or excluded in p.parents)

    source_dir = None
    if isinstance(images, str | os.PathLike):
        source = Path(images).expanduser()
        if source.is_dir():
            root = source_dir = source.resolve()
            paths = [
                p
                for p in root.rglob("*")
                if p.suffix.lower() in IMAGE_EXTENSIONS
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(root).parts)
                and keep(p)
            ]
            what = f"folder {source} (extensions {', '.join(sorted(IMAGE_EXTENSIONS))})"
        elif source.exists():
            paths = [source.resolve()]
            root = paths[0].parent
            what = str(source)
        else:
            paths = [Path(p).resolve() for p in glob.glob(str(source), recursive=True)]
            paths = [p for p in paths if p.is_file() and keep(p)]
            root = _common_root(paths)
            what = f"pattern {str(source)!r}"
    else:
        paths = [Path(p).expanduser().resolve() for p in images]
        root = _common_root(paths)
        what = "the list of images"
    if not paths:
        raise FileNotFoundError(f"no images found in {what}")
    unique = {p: ImageItem(p, Path(os.path.relpath(p, root)).as_posix()) for p in paths}
    if source_dir is not None and not follow_symlinks:
        unique = {p: _refuse_escaping_link(item, source_dir) for p, item in unique.items()}
    return sorted(unique.values(), key=lambda item: item.file_name)


def _common_root(paths: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path.cwd()


def _refuse_escaping_link(item: ImageItem, root: Path) -> ImageItem:
    """``item`` marked refused when its path, followed through links, leaves ``root``."""
    target = item.path.resolve()
    if target == root or root in target.parents:
        return item
    return ImageItem(
        item.path,
        item.file_name,
        refused=(
            f"symbolic link to {target}, outside the input folder {root}; not opened "
            "(pass --follow-symlinks / follow_symlinks=True to label it)"
        ),
    )
