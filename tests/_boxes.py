"""Box prompts shared by the segmenter tests."""

import numpy as np

from grounded_sam.types import Detections


def border_boxes(h: int, w: int, n: int, seed: int = 0) -> np.ndarray:
    """n random xyxy float32 boxes inside an (h, w) image, the first four touching the borders."""
    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(0, w, (n, 2)), axis=1)
    y = np.sort(rng.uniform(0, h, (n, 2)), axis=1)
    boxes = np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1).astype(np.float32)
    border = [[0, 0, w, h], [0, 7.5, w / 3, h], [w / 2, 0, w, h / 2], [5, h - 40, w, h]]
    boxes[: min(4, n)] = np.asarray(border, np.float32)[: min(4, n)]
    return boxes


def detections_for(boxes: np.ndarray, size: tuple[int, int]) -> Detections:
    """Detections of ``boxes`` on an image of ``size`` (H, W), with scores, phrases, classes."""
    n = len(boxes)
    return Detections(
        xyxy=boxes,
        scores=np.linspace(0.9, 0.3, n),
        phrases=[f"thing {i}" for i in range(n)],
        class_id=np.arange(n) % 2,
        image_size=size,
    )
