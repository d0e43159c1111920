"""Synthetic test images shared by several test files."""

import numpy as np


def blob_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colour blobs plus noise, uint8 (h, w, 3): not constant, so masks vary."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.float64)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(20, 120)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 10, img.shape)
    return img.clip(0, 255).astype(np.uint8)
