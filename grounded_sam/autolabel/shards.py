"""Splitting a dataset over machines: which shard an image belongs to, and what each shard saw.

Every image has a stable id, the sha1 of its ``file_name`` (its path relative to the dataset
root). The listing, sorted by id, is cut into ``count`` consecutive runs of equal length
(lengths differ by at most one); shard ``k`` takes the ``k``-th run. The split depends on the
set of file names only: not on the listing order, the machine, or where the dataset is
mounted; so every machine that lists the same folder agrees on it without talking to the
others, and the shards are as balanced as they can be. (A hash modulo ``count`` would depend
on each name alone, but 100 images in 4 shards would then vary from about 15 to 35.) When the
shards saw different listings (images added while they started), the merge notices: the
manifests' listing digests differ.

Each shard run writes a manifest, ``.state/shards/shard-K-of-N.json``: its own images, the
configuration fingerprint, the formats, and how many images the whole listing gave each shard.
:func:`grounded_sam.autolabel.merge.merge_shards` reads the manifests to know the dataset's
images and to tell a shard that never started from one that finished.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from grounded_sam.autolabel.sources import ImageItem
from grounded_sam.autolabel.state import read_json, write_json

MANIFEST_DIR = "shards"
MANIFEST_VERSION = 1
_SHARD_TEXT = re.compile(r"^\s*(-?\d+)\s*/\s*(-?\d+)\s*$")
_MANIFEST_NAME = re.compile(r"^shard-(\d+)-of-(\d+)\.json$")


def image_id(file_name: str) -> str:
    """The stable id of an image: the sha1 (hex) of its ``file_name`` (relative, posix)."""
    return hashlib.sha1(file_name.encode("utf-8")).hexdigest()


def shard_of(file_names: Iterable[str], count: int) -> dict[str, int]:
    """The shard, in ``range(count)``, of each of ``file_names`` (a dataset's whole listing).

    Sorted by :func:`image_id`, the ``n`` names are cut into ``count`` runs of equal length
    (they differ by at most one): the name at position ``p`` goes to shard ``p * count // n``.
    """
    ordered = sorted(set(file_names), key=lambda name: (image_id(name), name))
    n = len(ordered)
    return {name: position * count // n for position, name in enumerate(ordered)}


def shard_sizes(n: int, count: int) -> list[int]:
    """How many of ``n`` images each of ``count`` shards gets (they differ by at most one):
    shard ``k`` holds the positions ``p`` with ``p * count // n == k``."""
    starts = [-(-k * n // count) for k in range(count + 1)]  # ceil(k * n / count)
    return [starts[k + 1] - starts[k] for k in range(count)]


@dataclass(frozen=True, order=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based: ``Shard(0, 4)`` … ``Shard(3, 4)``)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or isinstance(self.count, bool):
            raise TypeError(f"shard index and count must be integers, got {self!r}")
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(
                f"shard {self.index}/{self.count} does not exist: the count must be >= 1 and "
                f"the index counts from 0 to count - 1 (0/{max(self.count, 1)} … "
                f"{max(self.count, 1) - 1}/{max(self.count, 1)})"
            )

    @classmethod
    def parse(cls, value: Shard | Sequence[int] | str) -> Shard:
        """A shard from ``"K/N"``, ``(K, N)`` or a ``Shard``.

        Raises:
            ValueError: not of that form, or ``K`` outside ``0 … N-1``.
        """
        if isinstance(value, Shard):
            return value
        if isinstance(value, str):
            match = _SHARD_TEXT.match(value)
            if match is None:
                raise ValueError(f"a shard is written K/N (e.g. 0/4), got {value!r}")
            return cls(int(match[1]), int(match[2]))
        try:
            index, count = value
        except (TypeError, ValueError):
            raise ValueError(f"a shard is (index, count), e.g. (0, 4), got {value!r}") from None
        return cls(int(index), int(count))

    @property
    def tag(self) -> str:
        """``"shard-K-of-N"``: the part of this shard's file names that names it."""
        return f"shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def select(self, items: Sequence[ImageItem]) -> list[ImageItem]:
        """The items of this shard among ``items`` (the dataset's whole listing), in their
        order."""
        shards = shard_of((it.file_name for it in items), self.count)
        return [it for it in items if shards[it.file_name] == self.index]


def listing_digest(items: Sequence[ImageItem]) -> str:
    """A fingerprint of the whole listing (its sorted file names), to tell whether two shards
    saw the same images."""
    h = hashlib.sha1()
    for name in sorted(it.file_name for it in items):
        h.update(name.encode("utf-8") + b"\n")
    return h.hexdigest()


def manifest_path(state: Path, shard: Shard) -> Path:
    return state / MANIFEST_DIR / f"{shard.tag}.json"


def write_manifest(
    state: Path,
    shard: Shard,
    items: Sequence[ImageItem],
    *,
    config: str,
    formats: Sequence[str],
) -> list[ImageItem]:
    """Write ``shard``'s manifest for the full listing ``items``; returns the shard's items.

    The image paths are stored as one root and the file names relative to it (the dataset
    root, which ``list_images`` made every ``file_name`` relative to).
    """
    own = shard.select(items)
    counts = shard_sizes(len({it.file_name for it in items}), shard.count)
    root = _root(items)
    manifest: dict[str, Any] = {
        "version": MANIFEST_VERSION,
        "shard": [shard.index, shard.count],
        "config": config,
        "formats": list(formats),
        "listed": len(items),
        "listing": listing_digest(items),
        "counts": counts,
        "root": str(root) if root is not None else None,
        "file_names": [it.file_name for it in own],
    }
    if root is None:  # not expected from list_images; keep every path then
        manifest["paths"] = [str(it.path) for it in own]
    write_json(manifest_path(state, shard), manifest)
    return own


def _root(items: Sequence[ImageItem]) -> Path | None:
    """The folder that every ``item.path`` is ``folder / item.file_name`` of, if there is one."""
    if not items:
        return None
    first = items[0]
    root = first.path.parents[len(PurePosixPath(first.file_name).parts) - 1]
    return root if all(it.path == root / it.file_name for it in items) else None


def read_manifests(state: Path) -> dict[Shard, dict[str, Any]]:
    """Every readable manifest under ``state/shards``, by shard."""
    found: dict[Shard, dict[str, Any]] = {}
    folder = state / MANIFEST_DIR
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        match = _MANIFEST_NAME.match(path.name)
        manifest = read_json(path) if match else None
        if isinstance(manifest, dict) and manifest.get("version") == MANIFEST_VERSION:
            found[Shard(int(match[1]), int(match[2]))] = manifest  # type: ignore[index]
    return found


def manifest_items(manifest: dict[str, Any]) -> list[ImageItem]:
    """The images a manifest lists (its shard's own), as ``ImageItem``s."""
    names = manifest["file_names"]
    if manifest.get("paths") is not None:
        return [ImageItem(Path(p), n) for p, n in zip(manifest["paths"], names, strict=True)]
    root = Path(manifest["root"]) if manifest.get("root") else Path()
    return [ImageItem(root / n, n) for n in names]
