"""What the page and the API show: JSON answers, table rows, download files, the banner."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from grounded_sam.service.models import CLIP, GROUNDING_DINO, ModelManager, ModelStatus
from grounded_sam.types import Detections


def result_json(detections: Detections, classes: Sequence[str] = (), **extra: Any) -> dict:
    """The API's answer: :meth:`Detections.to_dict` (boxes xyxy pixels, scores, phrases,
    class ids, RLE masks, mask scores, data) plus ``classes`` and any ``extra`` keys."""
    out = detections.to_dict()
    out["classes"] = list(classes)
    out.update(extra)
    return out


TABLE_HEADERS = ["label", "score", "mask score", "review"]


def table_rows(detections: Detections) -> list[list[Any]]:
    """One row per detection: label, detector score, mask score, and why it needs review
    (the label step's reason, ``"yes"`` without one; ``""`` when accepted)."""
    from grounded_sam.viz import detection_names, needs_review

    names = detection_names(detections)
    review = needs_review(detections)
    reasons = detections.data.get("review_reason")
    if reasons is None:
        reasons = [""] * len(detections)
    ms = detections.mask_scores
    return [
        [
            names[i],
            round(float(detections.scores[i]), 3),
            None if ms is None else round(float(ms[i]), 3),
            (reasons[i] or "yes") if review[i] else "",
        ]
        for i in range(len(detections))
    ]


def export_result(
    detections: Detections,
    classes: Sequence[str],
    out_dir: str | Path,
    *,
    file_name: str = "image.png",
) -> list[Path]:
    """Write the result for download; returns ``[annotations.coco.json, masks.zip]``.

    - ``annotations.coco.json``: one image (``file_name``), the classes as categories
      (detections without a class under ``"unknown"``), compressed-RLE masks, review flags;
    - ``masks.zip``: ``masks/<stem>.png``, the instance map (pixel ``i + 1`` = detection ``i``,
      0 = background), and ``masks/<stem>.json``, its sidecar (class, scores, review flag and
      area of each instance), as :class:`grounded_sam.export.PngWriter` writes them.

    Unlabelled masks (``classes`` empty, the everything mode) are exported as class "object".
    """
    import zipfile

    from grounded_sam.export.coco import UNKNOWN_CATEGORY, CocoWriter
    from grounded_sam.export.png import PngWriter

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if detections.masks is None:
        raise ValueError("export_result needs detections with masks; run the segment step first")
    h, w = detections.image_size
    names = [c for c in classes if c != UNKNOWN_CATEGORY]
    if not names:
        names = ["object"]
        detections = detections.replace(class_id=np.zeros(len(detections), np.int64))
    writer = CocoWriter(names, unknown="category")
    writer.add({"file_name": file_name, "height": h, "width": w}, detections)
    coco_path = Path(writer.write(out_dir / "annotations.coco.json"))

    pngs = PngWriter(out_dir, classes=names)
    png_path = Path(pngs.add(file_name, detections))
    zip_path = out_dir / "masks.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in (png_path, pngs.sidecar_path(file_name)):
            zf.write(path, path.relative_to(out_dir).as_posix())
    return [coco_path, zip_path]


def status_markdown(manager: ModelManager, statuses: Sequence[ModelStatus] | None = None) -> str:
    """The page's banner: random-weights warning, or which models are missing and how to fetch."""
    if manager.tiny_random:
        return (
            "**⚠ Random weights (`--tiny-random`).** Tiny untrained models: the boxes, masks and "
            "labels are meaningless. This mode is for trying the page and for tests; run "
            "`python app.py` (without `--tiny-random`) for the real models."
        )
    statuses = manager.status() if statuses is None else statuses
    missing = [s for s in statuses if not s.present]
    if not missing:
        return ""
    present = {s.role for s in statuses if s.present}
    if "sam" not in present:  # every mode segments with SAM
        lines = ["**No SAM model is on disk, so nothing on this page can run yet.** Fetch:"]
    elif not present & {GROUNDING_DINO, CLIP}:
        lines = ["**No detector is on disk**: clicks and everything mode work; text prompts need:"]
    else:
        lines = ["**Some models are not on disk** (modes that need only the others work):"]
    lines += [
        f"- `{s.name}` ({s.role}): missing {s.missing_summary()} — run `{s.command}`"
        for s in missing
    ]
    return "\n".join(lines)
