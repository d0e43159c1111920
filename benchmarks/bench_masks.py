"""Mask codecs: ``grounded_sam.masks`` against pycocotools called directly.

Encode (bool (H, W) -> compressed RLE with ``str`` counts), decode (RLE -> bool (H, W)),
area and box, on SAM-like masks (a few discs and boxes, a hole, a speck) and on noise, at
480x640 and 2000x3000, alternately in one process; prints medians in milliseconds and the
ratio pycocotools / ours (> 1: ours is faster). Area and box are timed both from a dense mask
(what the pipeline holds) and from an RLE (what the COCO export holds). ``grounded_sam.masks``
now encodes and reads RLE area/box with pycocotools itself; the figures that chose which
library does what (the former numpy encoder included) are in ``grounded_sam/masks.py`` and
benchmarks/README.md::

    python benchmarks/bench_masks.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import subprocess

import numpy as np
from common import median, time_alternating  # noqa: F401 - sets sys.path for grounded_sam


def smooth_mask(h: int, w: int, seed: int) -> np.ndarray:
    """About 20 % of the image: discs and a box, a hole, a one-pixel speck."""
    rng = np.random.default_rng(seed)
    yy, xx = np.ogrid[:h, :w]
    m = np.zeros((h, w), bool)
    for _ in range(4):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.05, 0.2) * min(h, w)
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    m[: h // 7, : w // 5] = True
    m &= ~((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 12) ** 2)
    m[int(rng.integers(0, h)), int(rng.integers(0, w))] ^= True
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if "Model name" in ln), "?")
    print(f"== mask codecs; cpu: {name}, {os.cpu_count()} logical cores; load {os.getloadavg()}")

    print(f"{'mask':<22} {'operation':<12} {'ours ms':>9} {'pycoco ms':>10} {'pycoco/ours':>12}")
    for h, w in ((480, 640), (2000, 3000)):
        compare(f"smooth {h}x{w}", smooth_mask(h, w, 0), args.repeats)
        compare(
            f"noise 50% {h}x{w}", np.random.default_rng(1).uniform(size=(h, w)) < 0.5, args.repeats
        )


def compare(label: str, mask: np.ndarray, repeats: int) -> None:
    """Time each operation of ``grounded_sam.masks`` and of pycocotools on one mask."""
    from pycocotools import mask as coco

    from grounded_sam import masks as ours

    def coco_encode(m: np.ndarray) -> dict:
        rle = coco.encode(np.asfortranarray(m).view(np.uint8))
        return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}

    rle = ours.mask_to_rle(mask)
    assert rle == coco_encode(mask)
    crle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    stack = mask[None]
    ops = {
        "encode": (lambda: ours.mask_to_rle(mask), lambda: coco_encode(mask)),
        "decode": (lambda: ours.rle_to_mask(rle), lambda: coco.decode(crle).view(bool)),
        "area(mask)": (lambda: ours.mask_area(stack), lambda: coco.area(coco_encode(mask))),
        "box(mask)": (lambda: ours.masks_to_xyxy(stack), lambda: coco.toBbox(coco_encode(mask))),
        "area(rle)": (lambda: ours.rle_area([rle]), lambda: coco.area([crle])),
        "box(rle)": (lambda: ours.rles_to_xyxy([rle]), lambda: coco.toBbox([crle])),
    }
    for op, (mine, theirs) in ops.items():
        t = time_alternating({"ours": mine, "pycoco": theirs}, repeats)
        a, b = median(t["ours"]) * 1e3, median(t["pycoco"]) * 1e3
        print(f"{label:<22} {op:<12} {a:9.3f} {b:10.3f} {b / a:11.2f}x")


if __name__ == "__main__":
    main()
