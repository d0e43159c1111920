"""Seeded masks whose COCO RLE strings are pinned in ``rle_golden.json``.

The golden strings were written by the package's own numpy RLE codec (``grounded_sam.masks``
at commit bb37d43, before pycocotools took over encoding) with::

    PYTHONPATH=$PWD python tests/_rle_cases.py

``test_masks.py`` rebuilds each mask from its recipe here, checks the mask's sha256 (so a
changed recipe is told apart from a changed codec) and asserts that today's ``mask_to_rle``
writes the same ``counts`` string, and that area and box are the same.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).with_name("rle_golden.json")


def _noise(shape: tuple[int, int], p: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=shape) < p


def _disc(h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.hypot(yy - cy, xx - cx) < r


def _pixel(h: int, w: int, y: int, x: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y, x] = True
    return m


def _objects(h: int, w: int, seed: int) -> np.ndarray:
    """A few discs and boxes (one touching each border), a hole, a speck: an SAM-like mask."""
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), bool)
    for _ in range(4):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        m |= _disc(h, w, cy, cx, rng.uniform(0.05, 0.25) * min(h, w))
    m[: h // 7, : w // 5] = True  # top-left corner
    m[-(h // 9) :, w // 3 : w // 2] = True  # bottom border
    m[h // 3 : h // 2, -(w // 11) :] = True  # right border
    m &= ~_disc(h, w, h / 2, w / 2, min(h, w) / 12)  # a hole
    m[int(rng.integers(0, h)), int(rng.integers(0, w))] ^= True  # a speck
    return m


@functools.cache
def cases() -> dict[str, np.ndarray]:
    """name -> bool (H, W) mask; every recipe is deterministic (seeded)."""
    out = {
        "empty 1x1": np.zeros((1, 1), bool),
        "full 1x1": np.ones((1, 1), bool),
        "empty 480x640": np.zeros((480, 640), bool),
        "full 480x640": np.ones((480, 640), bool),
        "full 17x3": np.ones((17, 3), bool),
        "pixel first 9x11": _pixel(9, 11, 0, 0),
        "pixel last 9x11": _pixel(9, 11, 8, 10),
        "pixel middle 9x11": _pixel(9, 11, 4, 5),
        "pixel bottom-left 480x640": _pixel(480, 640, 479, 0),
        "pixel top-right 480x640": _pixel(480, 640, 0, 639),
        "one row 1x23": np.eye(1, 23, 5, dtype=bool),
        "one column 23x1": np.eye(23, 1, -5, dtype=bool),
        "first row 7x13": np.pad(np.ones((1, 13), bool), ((0, 6), (0, 0))),
        "last column 7x13": np.pad(np.ones((7, 1), bool), ((0, 0), (12, 0))),
        "frame 31x17": ~np.pad(np.ones((29, 15), bool), 1),
        "inverse frame 31x17": np.pad(np.ones((29, 15), bool), 1),
        "noise 10% 7x13": _noise((7, 13), 0.1, 1),
        "noise 50% 31x17": _noise((31, 17), 0.5, 2),
        "noise 95% 64x3": _noise((64, 3), 0.95, 3),
        "noise 30% 3x64": _noise((3, 64), 0.3, 4),
        "noise 50% 101x97": _noise((101, 97), 0.5, 5),
        "noise 2% 255x257": _noise((255, 257), 0.02, 6),
        "stripes 300x301": np.tile(np.arange(301) % 150 < 120, (300, 1)),
        "objects 479x641": _objects(479, 641, 7),
        "objects 480x640": _objects(480, 640, 8),
        "objects 1201x1103": _objects(1201, 1103, 9),
        "inverse objects 1201x1103": ~_objects(1201, 1103, 9),
        # runs longer than 2**20 pixels: counts that need five and more characters
        "block 2000x3000": np.pad(np.ones((1500, 2400), bool), ((300, 200), (500, 100))),
        "objects 2000x3000": _objects(2000, 3000, 10),
    }
    return out


def digest(mask: np.ndarray) -> str:
    """sha256 of the mask's shape and its bytes (C order, one byte a pixel)."""
    h = hashlib.sha256(repr(mask.shape).encode())
    h.update(np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    return h.hexdigest()


def main() -> None:
    from grounded_sam.masks import mask_area, mask_to_rle, masks_to_xyxy

    golden = {}
    for name, mask in cases().items():
        rle = mask_to_rle(mask)
        golden[name] = {
            "mask_sha256": digest(mask),
            "size": rle["size"],
            "counts": rle["counts"],
            "area": int(mask_area(mask[None])[0]),
            "xyxy": masks_to_xyxy(mask[None])[0].tolist(),
        }
    lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in golden.items()]  # a case a line
    GOLDEN.write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(f"wrote {len(golden)} cases to {GOLDEN}")


if __name__ == "__main__":
    main()
