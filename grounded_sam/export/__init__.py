"""Dataset exporters: COCO instance segmentation JSON, YOLO segmentation labels, PNG masks.

Every exporter takes per-image ``Detections`` with masks (after the segment and label steps)
and writes its files atomically (temporary file + rename), so an interrupted labelling run
never leaves a half-written file and a resumed run can tell which images are finished:

- :class:`CocoWriter` — one JSON; ``file_name in writer`` after :meth:`CocoWriter.load`.
- :class:`YoloWriter` — ``labels/<name>.txt`` per image and ``data.yaml``.
- :class:`PngWriter` — ``masks/<name>.png`` + ``masks/<name>.json`` per image.

OpenCV (for YOLO polygons) and PIL (for PNGs) are imported only when those writers run.
"""

from grounded_sam.export.coco import CocoWriter, detections_from_coco, load_coco
from grounded_sam.export.png import PngWriter, detections_from_png, instance_map
from grounded_sam.export.yolo import YoloWriter, mask_to_polygons, yolo_lines

__all__ = [
    "CocoWriter",
    "PngWriter",
    "YoloWriter",
    "detections_from_coco",
    "detections_from_png",
    "instance_map",
    "load_coco",
    "mask_to_polygons",
    "yolo_lines",
]
