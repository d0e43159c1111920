"""``merge_shards``: the final exports of a dataset labelled in shards, once every shard is done.

The shards of a run share one output folder and leave there one state record per image and
one manifest per shard (:mod:`~grounded_sam.autolabel.shards`). The merge reads the manifests
to know every image of the dataset, checks that each has a record made with the folder's
configuration, and then builds the COCO file, ``data.yaml``, ``errors.jsonl`` and
``summary.json`` with the same code, in the same order, as an unsharded run: the files are
byte for byte those of one machine labelling everything. It reads no image and loads no model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grounded_sam.autolabel.outputs import (
    FORMATS,
    Exports,
    LabelSummary,
    build_outputs,
    check_formats,
)
from grounded_sam.autolabel.shards import Shard, manifest_items, read_manifests
from grounded_sam.autolabel.sources import ImageItem
from grounded_sam.autolabel.state import (
    STATE_DIR,
    ConfigMismatchError,
    fingerprint,
    read_json,
    record_path,
)
from grounded_sam.errors import GroundedSamError


class MergeError(GroundedSamError, RuntimeError):
    """The shards in an output folder cannot be merged as they are (the message says why)."""


@dataclass(frozen=True)
class ShardProgress:
    """How far one shard is: ``missing`` of its ``images`` have no result yet."""

    shard: Shard
    images: int
    missing: int
    started: bool  # False: no manifest, the shard never ran


class IncompleteShardsError(MergeError):
    """Some images have no result yet: a shard has not finished (or never started).

    ``shards`` lists every unfinished shard as a :class:`ShardProgress`.
    """

    def __init__(self, message: str, shards: list[ShardProgress]):
        super().__init__(message)
        self.shards = shards


def merge_shards(
    out_dir: str | os.PathLike,
    *,
    formats: list[str] | str | None = None,
    shards: int | None = None,
    allow_partial: bool = False,
    progress: bool = False,
) -> LabelSummary:
    """Build the exports and the summary of ``out_dir`` from every shard's per-image results.

    Args:
        out_dir: the folder the shards labelled into (``auto_label(..., shard=(k, n))``).
        formats: the exports to write (default: every format the shards were run with).
        shards: the shard count ``n`` to merge, needed only when the folder holds runs split
            in several ways (e.g. an unsharded run, then 4 shards).
        allow_partial: write the exports from the images that have results even when a
            shard has not finished; the summary's ``missing`` says how many are left out.
        progress: a progress bar on stderr.

    Returns:
        The :class:`LabelSummary`, also written to ``out_dir/summary.json``.

    Raises:
        FileNotFoundError: ``out_dir`` holds no labelling results.
        IncompleteShardsError: some shard has not finished (and ``allow_partial`` is False);
            the message says how many images each shard still lacks.
        ConfigMismatchError: a shard ran with another configuration than the folder's.
        MergeError: the shards saw different image listings, or the shard count is ambiguous.
    """
    out = Path(out_dir).expanduser()
    state = out / STATE_DIR
    config = read_json(state / "config.json")
    if not isinstance(config, dict):
        raise FileNotFoundError(
            f"{out} holds no labelling results ({state / 'config.json'} is missing): label "
            f"into it first, e.g. `grounded-sam label IMAGES -o {out} --classes ... --shard K/N`"
        )
    count = _shard_count(out, read_manifests(state), shards)
    manifests = {s: m for s, m in read_manifests(state).items() if s.count == count}
    config_id = fingerprint(config)
    other = sorted(s for s, m in manifests.items() if m.get("config") != config_id)
    if other:
        raise ConfigMismatchError(
            f"shard(s) {', '.join(map(str, other))} of {out} ran with another configuration "
            f"(prompt, classes or pipeline settings) than {state / 'config.json'}. Run them "
            f"again with the same arguments as the other shards (their images are labelled "
            f"again), or label everything into a new folder."
        )
    listings = {m["listing"] for m in manifests.values()}
    if len(listings) > 1 and not allow_partial:
        seen = ", ".join(f"shard {s}: {m['listed']} images" for s, m in sorted(manifests.items()))
        raise MergeError(
            f"the shards of {out} listed different images ({seen}): images were added or "
            f"removed while they ran. Run every shard again with the same IMAGES (each "
            f"resumes, labelling only what is new), then merge; or pass allow_partial=True "
            f"(`--allow-partial`)."
        )

    items: list[ImageItem] = []
    unfinished: list[ShardProgress] = []
    expected = max(manifests.values(), key=lambda m: m["listed"])["counts"]
    for k in range(count):
        shard = Shard(k, count)
        manifest = manifests.get(shard)
        if manifest is None:
            unfinished.append(ShardProgress(shard, expected[k], expected[k], started=False))
            continue
        own = manifest_items(manifest)
        items.extend(own)
        missing = sum(not _finished(state, it, config_id) for it in own)
        if missing:
            unfinished.append(ShardProgress(shard, len(own), missing, started=True))
    if unfinished and not allow_partial:
        raise IncompleteShardsError(_incomplete_message(out, unfinished, count), unfinished)

    items.sort(key=lambda it: it.file_name)
    if formats is None:
        used = {f for m in manifests.values() for f in m.get("formats", ())}
        formats = [f for f in FORMATS if f in used] or ["coco"]
    classes = list(config["classes"])
    exports = Exports(out, classes, check_formats(formats), [it.file_name for it in items])
    summary = build_outputs(out, items, classes, exports, config=config_id, progress=progress)
    if unfinished:
        summary.missing = {str(p.shard): p.missing for p in unfinished}
    return summary


def _shard_count(out: Path, manifests: dict[Shard, Any], shards: int | None) -> int:
    counts = sorted({s.count for s in manifests})
    if not counts:
        raise MergeError(
            f"{out} holds no shard manifests ({out / STATE_DIR / 'shards'}): run the label "
            f"command into it again with the same arguments (it resumes and writes them)"
        )
    if shards is not None:
        if shards not in counts:
            raise MergeError(
                f"{out} holds no run split {shards} ways; it holds runs split "
                f"{' and '.join(map(str, counts))} ways"
            )
        return shards
    if len(counts) > 1:
        raise MergeError(
            f"{out} holds runs split {' and '.join(map(str, counts))} ways: say which to "
            f"merge with shards=N (`--shards N`); their per-image results are shared"
        )
    return counts[0]


def _finished(state: Path, item: ImageItem, config: str) -> bool:
    """Whether ``item`` has a record of this configuration (labelled, or skipped as bad)."""
    record = read_json(record_path(state, item))
    return (
        isinstance(record, dict)
        and record.get("file_name") == item.file_name
        and record.get("config") == config
        and record.get("status") in ("ok", "error")
    )


def _incomplete_message(out: Path, unfinished: list[ShardProgress], count: int) -> str:
    lines = []
    for p in unfinished:
        state = "" if p.started else " (never started: it left no manifest)"
        lines.append(f"  shard {p.shard}: {p.missing} of {p.images} images missing{state}")
    missing = sum(p.missing for p in unfinished)
    return (
        f"{missing} image(s) of {out} have no result yet; {len(unfinished)} of {count} "
        f"shard(s) have not finished:\n"
        + "\n".join(lines)
        + "\nRun each unfinished shard again with the same arguments (`grounded-sam label "
        "... --shard K/N` resumes where it stopped), then merge again; or merge what there "
        "is with allow_partial=True (`--allow-partial`)."
    )
