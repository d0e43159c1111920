"""The files a labelling run ends with, built from the per-image state records.

Per-image formats (YOLO labels, PNG masks) are written as each image finishes; the COCO file,
``errors.jsonl`` and ``summary.json`` hold every image and are built at the end, one image at
a time in sorted file-name order (masks are held as RLE only), with COCO image ids taken from
that order. The same records therefore always give the same bytes, whichever run (or
interrupted sequence of runs, or set of shards on several machines) wrote them.

A shard run (``shard`` given) ends with its own ``summary.shard-K-of-N.json`` and
``errors.shard-K-of-N.jsonl`` instead: the COCO file and ``data.yaml`` are left to the merge,
which runs this same code over every shard's images.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grounded_sam.autolabel.sources import ImageItem
from grounded_sam.autolabel.state import STATE_DIR, read_json, record_path, write_json

FORMATS = ("coco", "yolo", "png")
EXPORT_PATHS = {"coco": "annotations.coco.json", "yolo": "yolo", "png": "masks"}


@dataclass
class LabelSummary:
    """What a labelling run did. ``to_dict()`` (written to ``summary.json``) is the same for an
    interrupted-and-resumed run as for an uninterrupted one; the ``run_*`` fields are not in it."""

    out_dir: str
    classes: list[str]
    images_total: int
    images_labelled: int
    skipped: list[dict[str, str]]  # {"file_name", "path", "reason"}, sorted by file_name
    detections_total: int
    detections_per_class: dict[str, int]
    detections_without_class: int
    review_count: int
    files: dict[str, str]  # format -> path of the export ({} for a shard: merge builds them)
    shard: str | None = None  # "K/N" for a shard's own summary
    missing: dict[str, int] | None = None  # a partial merge: "K/N" -> images without result
    run_resumed: int = 0  # images finished by an earlier run and not labelled again
    run_labelled: int = 0  # images labelled by this run
    run_seconds: float = 0.0
    run_images_per_second: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        shard = {"shard": self.shard} if self.shard is not None else {}
        missing = {"missing": self.missing} if self.missing is not None else {}
        return {
            **shard,
            **missing,
            "classes": self.classes,
            "images_total": self.images_total,
            "images_labelled": self.images_labelled,
            "images_skipped": len(self.skipped),
            "skipped": self.skipped,
            "detections_total": self.detections_total,
            "detections_per_class": self.detections_per_class,
            "detections_without_class": self.detections_without_class,
            "review_count": self.review_count,
            "files": self.files,
        }


def check_formats(formats: Sequence[str] | str) -> list[str]:
    """``"coco,yolo"`` or ``["yolo", "coco"]`` -> ``["coco", "yolo"]`` (in ``FORMATS`` order).

    Raises:
        ValueError: an unknown format, or none.
    """
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [n.strip().lower() for n in names if n.strip()]
    unknown = sorted(set(names) - set(FORMATS))
    if unknown or not names:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {', '.join(FORMATS)}")
    return [f for f in FORMATS if f in names]


class Exports:
    """The export writers of one run. Per-image formats (YOLO, PNG) are written as each image
    finishes; the COCO file, which holds every image, is built at the end."""

    def __init__(
        self,
        out: Path,
        classes: list[str],
        formats: list[str],
        file_names: Sequence[str] = (),
    ):
        """``file_names``: the whole listing (every shard's), for the safe and unique output
        names of :func:`~grounded_sam.autolabel.names.output_names`."""
        from grounded_sam.autolabel.names import output_names

        self.out, self.classes, self.formats = out, classes, formats
        self.names = output_names(file_names)
        self.yolo = self.png = None
        if "yolo" in formats:
            from grounded_sam.export.yolo import YoloWriter

            self.yolo = YoloWriter(out / EXPORT_PATHS["yolo"], classes)
        if "png" in formats:
            from grounded_sam.export.png import PngWriter

            self.png = PngWriter(out, classes)  # writes out/masks/<name>.png + .json

    def output_name(self, file_name: str) -> str:
        """The name the per-image files of ``file_name`` are written under."""
        name = self.names.get(file_name)
        if name is None:  # not in the listing given at construction: the same rule, alone
            from grounded_sam.autolabel.names import output_names

            name = output_names([file_name])[file_name]
        return name

    def discard_image(self, file_name: str) -> None:
        """Remove the per-image files of ``file_name`` (after a failed export: no half set)."""
        name = self.output_name(file_name)
        paths = []
        if self.yolo is not None:
            paths.append(self.yolo.label_path(name))
        if self.png is not None:
            paths += [self.png.png_path(name), self.png.sidecar_path(name)]
        for path in paths:
            path.unlink(missing_ok=True)

    def missing(self, file_name: str) -> bool:
        """Whether a per-image file (YOLO, PNG) of ``file_name`` is still to be written."""
        name = self.output_name(file_name)
        return any(w is not None and name not in w for w in (self.yolo, self.png))

    def add_image(self, file_name: str, detections: Any, *, only_missing: bool = False) -> None:
        name = self.output_name(file_name)
        for writer in (self.yolo, self.png):
            if writer is not None and not (only_missing and name in writer):
                writer.add(file_name, detections, output_name=name)

    def files(self) -> dict[str, str]:
        return {f: EXPORT_PATHS[f] for f in self.formats}


def output_names(shard: Any = None) -> tuple[str, str]:
    """``("summary.json", "errors.jsonl")``, or a shard's ``summary.shard-K-of-N.json`` …"""
    if shard is None:
        return "summary.json", "errors.jsonl"
    return f"summary.{shard.tag}.json", f"errors.{shard.tag}.jsonl"


def build_outputs(
    out: Path,
    items: Sequence[ImageItem],
    classes: list[str],
    exports: Exports,
    *,
    config: str | None = None,
    shard: Any = None,
    progress: bool = False,
) -> LabelSummary:
    """Build the COCO file, errors.jsonl and summary.json from the per-image state files, one
    image at a time, in the order of ``items``. Masks stay the RLE of the state file (COCO
    takes it as it is); they are decoded only for a YOLO or PNG file still to be written.

    Args:
        config: the configuration fingerprint; a record made with another one counts as not
            labelled. ``None`` accepts every record.
        shard: a :class:`~grounded_sam.autolabel.shards.Shard`: write only that shard's
            summary and errors files (no COCO file, no ``data.yaml``).
        progress: a progress bar on stderr.
    """
    from tqdm.auto import tqdm

    from grounded_sam.export._io import atomic_write_text
    from grounded_sam.types import Detections

    coco = None
    if "coco" in exports.formats and shard is None:
        from grounded_sam.export.coco import CocoWriter

        coco = CocoWriter(classes)
    state = out / STATE_DIR
    skipped: list[dict[str, str]] = []
    per_class = dict.fromkeys(classes, 0)
    labelled = without = review = total = 0
    bar = tqdm(items, unit="img", desc="exporting", disable=not progress)
    for image_id, item in enumerate(bar, start=1):
        record = read_json(record_path(state, item)) or {}
        if config is not None and record.get("config") != config:
            record = {}
        if record.get("status") != "ok":
            reason = record.get("reason", "not labelled")
            skipped.append({"file_name": item.file_name, "path": str(item.path), "reason": reason})
            continue
        pixels = exports.missing(item.file_name)
        dets = Detections.from_dict(record["detections"], masks=pixels)
        entries = record["detections"]["detections"]
        rles = [it["mask"] for it in entries] if all("mask" in it for it in entries) else None
        labelled += 1
        total += len(dets)
        for cid in dets.class_id.tolist():
            if 0 <= cid < len(classes):
                per_class[classes[cid]] += 1
            else:
                without += 1
        review += _review_count(dets)
        if coco is not None:
            coco.add({"file_name": item.file_name}, dets, image_id=image_id, rles=rles)
        if pixels:
            exports.add_image(item.file_name, dets, only_missing=True)

    if coco is not None:
        coco.write(out / EXPORT_PATHS["coco"])
    if exports.yolo is not None and shard is None:
        exports.yolo.write_data_yaml()
    summary_name, errors_name = output_names(shard)
    errors = "".join(json.dumps(s, sort_keys=True, ensure_ascii=False) + "\n" for s in skipped)
    atomic_write_text(out / errors_name, errors)
    summary = LabelSummary(
        out_dir=str(out),
        classes=classes,
        images_total=len(items),
        images_labelled=labelled,
        skipped=skipped,
        detections_total=total,
        detections_per_class=per_class,
        detections_without_class=without,
        review_count=review,
        files=exports.files() if shard is None else {},
        shard=None if shard is None else str(shard),
    )
    write_json(out / summary_name, summary.to_dict())
    return summary


def _review_count(dets: Any) -> int:
    flags = dets.data.get("needs_review")
    return 0 if flags is None else int(sum(bool(f) for f in flags))
