"""The files a labelling run ends with, built from the per-image state records.

Per-image formats (YOLO labels, PNG masks) are written as each image finishes; the COCO file,
``errors.jsonl`` and ``summary.json`` hold every image and are built at the end, one image at
a time in sorted file-name order, with COCO image ids taken from that order. The COCO file
takes each mask's RLE from the state record as it is (area and box read from the runs); a
mask is decoded only for a file that needs its pixels (YOLO, PNG, Label Studio). The same records therefore always give the same bytes, whichever run (or
interrupted sequence of runs, or set of shards on several machines) wrote them.

A shard run (``shard`` given) ends with its own ``summary.shard-K-of-N.json`` and
``errors.shard-K-of-N.jsonl`` instead: the COCO file and ``data.yaml`` are left to the merge,
which runs this same code over every shard's images.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grounded_sam.autolabel.sources import ImageItem
from grounded_sam.autolabel.state import STATE_DIR, read_json, record_path, write_json

FORMATS = ("coco", "yolo", "png", "labelstudio")
EXPORT_PATHS = {
    "coco": "annotations.coco.json",
    "yolo": "yolo",
    "png": "masks",
    "labelstudio": "labelstudio",
}
# Which detections each export holds (the summary's ``exported`` counts them).
EXPORT_CONTENTS = {
    "coco": "annotations: detections with a class and a non-empty mask",
    "yolo": "polygons: detections with a class and a non-empty mask (one label line each)",
    "png": "instances: every detection, those without a class too (class_id -1 in the sidecar)",
    "labelstudio": "brush regions: detections with a class and a non-empty mask",
}


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
    # format -> how many detections it holds (EXPORT_CONTENTS says which); {} for a shard
    exported: dict[str, int] | None = None
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
            "exported": self.exported or {},
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
        *,
        yolo_images: str = "link",
        yolo_val: float = 0.0,
        yolo_seed: int = 0,
    ):
        """``file_names``: the whole listing (every shard's), for the safe and unique output
        names of :func:`~grounded_sam.autolabel.names.output_names` and the YOLO train/val
        split (``yolo_val`` of the images to val, chosen with ``yolo_seed``).
        ``yolo_images``: ``"link"``, ``"copy"`` or ``"none"`` (:class:`YoloWriter`)."""
        from grounded_sam.autolabel.names import output_names

        self.out, self.classes, self.formats = out, classes, formats
        self.names = output_names(file_names)
        self.yolo = self.png = None
        if "yolo" in formats:
            from grounded_sam.export.split import train_val_split
            from grounded_sam.export.yolo import YoloWriter

            split = None
            if yolo_val:
                split = train_val_split(list(self.names.values()), yolo_val, seed=yolo_seed)
            self.yolo = YoloWriter(
                out / EXPORT_PATHS["yolo"], classes, images=yolo_images, split=split
            )
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
            if self.yolo.images != "none":
                paths.append(self.yolo.image_path(name))
        if self.png is not None:
            paths += [self.png.png_path(name), self.png.sidecar_path(name)]
        for path in paths:
            path.unlink(missing_ok=True)

    def missing(self, file_name: str) -> bool:
        """Whether a per-image file (YOLO, PNG) of ``file_name`` is still to be written."""
        name = self.output_name(file_name)
        return any(w is not None and name not in w for w in (self.yolo, self.png))

    def add_image(
        self,
        file_name: str,
        detections: Any,
        *,
        image_path: Path | None = None,
        only_missing: bool = False,
    ) -> None:
        """Write the per-image exports of ``file_name`` (``image_path``: the image on disk,
        which the YOLO export links or copies)."""
        name = self.output_name(file_name)
        if self.yolo is not None and not (only_missing and name in self.yolo):
            self.yolo.add(file_name, detections, output_name=name, image_path=image_path)
        if self.png is not None and not (only_missing and name in self.png):
            self.png.add(file_name, detections, output_name=name)

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
    studio = studio_root = None
    if "labelstudio" in exports.formats and shard is None:
        from grounded_sam.export.labelstudio import LabelStudioWriter

        studio = LabelStudioWriter(classes)
        studio_root = document_root(items)
    state = out / STATE_DIR
    skipped: list[dict[str, str]] = []
    per_class = dict.fromkeys(classes, 0)
    labelled = without = review = total = 0
    exported = dict.fromkeys(exports.formats, 0) if shard is None else {}
    bar = tqdm(items, unit="img", desc="exporting", disable=not progress)
    for image_id, item in enumerate(bar, start=1):
        record = read_json(record_path(state, item)) or {}
        if config is not None and record.get("config") != config:
            record = {}
        if record.get("status") != "ok":
            reason = record.get("reason", "not labelled")
            skipped.append({"file_name": item.file_name, "path": str(item.path), "reason": reason})
            continue
        # masks are decoded only for a per-image file still to write, or Label Studio's brushes
        pixels = exports.missing(item.file_name) or studio is not None
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
        _count_exported(exported, dets, len(classes), rles)
        if coco is not None:
            coco.add({"file_name": item.file_name}, dets, image_id=image_id, rles=rles)
        if studio is not None:
            image = Path(os.path.relpath(Path(item.path).absolute(), studio_root)).as_posix()
            studio.add(item.file_name, dets, image=image)
        if pixels:
            exports.add_image(item.file_name, dets, image_path=item.path, only_missing=True)

    if coco is not None:
        coco.write(out / EXPORT_PATHS["coco"])
        assert exported["coco"] == coco.num_annotations, "COCO counts disagree"
    if studio is not None:
        studio.write(out / EXPORT_PATHS["labelstudio"])
        atomic_write_text(
            out / EXPORT_PATHS["labelstudio"] / "README.txt", labelstudio_help(studio_root)
        )
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
        exported=exported,
        shard=None if shard is None else str(shard),
    )
    write_json(out / summary_name, summary.to_dict())
    return summary


def document_root(items: Sequence[ImageItem]) -> Path:
    """The folder above the images' dataset root(s): Label Studio's local-files document root,
    so that a task's ``?d=`` path starts with the image folder's name."""
    roots = []
    for item in items:
        depth = len(Path(item.file_name).parts)
        roots.append(Path(item.path).absolute().parents[depth - 1].parent)
    return Path(os.path.commonpath(roots)) if roots else Path.cwd()


def labelstudio_help(root: Path) -> str:
    """How to serve the images of ``tasks.json`` and import it (``labelstudio/README.txt``)."""
    return (
        "Label Studio pre-annotations written by grounded-sam (brush RLE masks).\n"
        "1. Start Label Studio so that it serves the images from local files:\n"
        f"     LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true "
        f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={root} label-studio start\n"
        "2. Create a project; Settings > Labeling Interface > Code: paste config.xml.\n"
        "3. Settings > Cloud Storage > Add Source Storage > Local files: an absolute path under\n"
        f"   {root} that holds the images (e.g. the image folder); do not sync it (the tasks\n"
        "   bring the images).\n"
        "4. Import tasks.json. Filter the data manager on needs_review, or sort by prediction\n"
        "   score (the least certain region of each image) to review the doubtful ones first.\n"
    )


def _count_exported(
    exported: dict[str, int], dets: Any, num_classes: int, rles: list[dict] | None = None
) -> None:
    """Add the detections of one image that each export in ``exported`` holds (mask areas
    from ``dets.masks``, or from the COCO ``rles`` when the masks were not decoded)."""
    import numpy as np

    from grounded_sam.masks import mask_area, rle_area

    if len(dets) == 0:
        return
    if dets.masks is not None:
        has_mask = mask_area(dets.masks) > 0
    elif rles is not None:
        has_mask = rle_area(rles) > 0
    else:
        has_mask = np.zeros(len(dets), bool)
    kept = int(((dets.class_id >= 0) & (dets.class_id < num_classes) & has_mask).sum())
    for fmt in exported:
        exported[fmt] += len(dets) if fmt == "png" else kept  # the others need a class


def _review_count(dets: Any) -> int:
    flags = dets.data.get("needs_review")
    return 0 if flags is None else int(sum(bool(f) for f in flags))
