"""Binary masks: COCO run-length encoding (RLE), boxes and areas from masks and from RLE.

RLE here is COCO's: the mask is read in column-major (Fortran) order, runs alternate
0, 1, 0, … starting with a (possibly empty) run of zeros, and the compressed form packs the
counts into an ASCII string (pycocotools' ``maskApi.c``), readable by every COCO tool.

pycocotools does what it is faster at; numpy keeps the rest. Medians of
``benchmarks/bench_masks.py`` on an Intel(R) Xeon(R) Processor (2 cores, load ~2.9), for a
SAM-like mask (discs, a box, a hole) at 480x640 / 2000x3000:

- encode: pycocotools 0.39 / 7.5 ms (the bool mask viewed as uint8 in Fortran order; 0.41 /
  18.0 ms with an ``astype`` copy), the former numpy codec 0.90 / 25.0 ms -> pycocotools;
- area and box of an RLE: pycocotools 0.005-0.06 ms without decoding, numpy needs the decode
  (0.14-3.9 ms) -> pycocotools (:func:`rle_area`, :func:`rles_to_xyxy`);
- decode: numpy 0.09 / 1.0 ms, pycocotools 0.27 / 10.6 ms -> numpy (:func:`rle_to_mask`; it
  also refuses malformed strings, which pycocotools decodes to garbage). pycocotools is ~4x
  faster on 50 % noise, which SAM does not produce;
- area and box of a bool mask: numpy 0.05-3.0 ms, pycocotools (encode first) 0.38-9.4 ms ->
  numpy (:func:`mask_area`, :func:`masks_to_xyxy`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _decompress(s: str | bytes) -> np.ndarray:
    """COCO's compressed string -> run lengths, int64 (K,) (``maskApi.c``'s ``rleFrString``,
    vectorised). Raises ValueError if malformed.

    Each value is stored as little-endian 5-bit groups of its two's complement, one character
    (``48 + group``, plus 32 when more groups follow) per group; counts from the third on are
    stored as differences to the count two places back.
    """
    raw = s.encode("ascii") if isinstance(s, str) else bytes(s)
    c = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if c.min() < 0 or c.max() > 63 or c[-1] & 0x20:
        raise ValueError(f"not a COCO compressed RLE string: {raw[:60]!r}")
    last = np.flatnonzero((c & 0x20) == 0)  # each value's last group
    first = np.concatenate([[0], last[:-1] + 1])
    n = last - first + 1
    if n.max() > 13:
        raise ValueError(f"COCO RLE string holds a value wider than 64 bits: {raw[:60]!r}")
    group = np.arange(len(c), dtype=np.int64) - np.repeat(first, n)
    x = np.add.reduceat((c & 0x1F) << (5 * group), first)
    negative = (c[last] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * n[negative], dtype=np.int64)
    # undo the differences: count i (i > 2) was stored minus count i - 2
    cnts = x.copy()
    cnts[1::2] = np.cumsum(x[1::2])
    cnts[2::2] = np.cumsum(x[2::2])
    return cnts


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """bool (H, W) mask (any dtype: nonzero is inside) -> COCO compressed RLE
    ``{"size": [H, W], "counts": str}`` (ASCII text), encoded by pycocotools."""
    from pycocotools import mask as mask_utils

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {mask.shape}")
    h, w = (int(v) for v in mask.shape)
    if mask.size == 0:  # pycocotools cannot encode an empty array; no runs
        return {"size": [h, w], "counts": ""}
    # pycocotools reads 0 and anything else as runs of values: 1 and 255 would differ
    fortran = np.asfortranarray(mask if mask.dtype == bool else mask != 0).view(np.uint8)
    rle = mask_utils.encode(fortran)
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (compressed string/bytes counts, or an uncompressed list) -> bool (H, W) mask
    (a column-major view: ``np.ascontiguousarray`` it for row-major work)."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a COCO RLE dict with 'size' and 'counts': {rle!r:.200}") from e
    if isinstance(counts, str | bytes):
        cnts = _decompress(counts)
    else:
        cnts = np.asarray([int(c) for c in counts], dtype=np.int64)
    total = int(cnts.sum())
    if total != h * w or (cnts < 0).any():
        raise ValueError(
            f"RLE counts sum to {total} but size {h}x{w} needs {h * w}"
            + (" (and counts must not be negative)" if (cnts < 0).any() else "")
        )
    values = np.zeros(len(cnts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, cnts)
    return flat.reshape((h, w), order="F")


def _coco_rles(rles: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for rle in rles:
        try:
            out.append({"size": [int(v) for v in rle["size"]], "counts": rle["counts"]})
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"not a COCO RLE dict with 'size' and 'counts': {rle!r:.200}") from e
        if not isinstance(out[-1]["counts"], str | bytes):
            raise ValueError(
                "rle_area / rles_to_xyxy take compressed RLE (str or bytes counts); encode "
                f"uncompressed counts with mask_to_rle(rle_to_mask(rle)) first: {rle!r:.200}"
            )
    return out


def rle_area(rles: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Pixel count of each compressed COCO RLE, int64 (N,), read from the runs (no decode)."""
    from pycocotools import mask as mask_utils

    if len(rles) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(mask_utils.area(_coco_rles(rles)), dtype=np.int64).reshape(-1)


def rles_to_xyxy(rles: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Tight xyxy boxes of compressed COCO RLEs, float32 (N, 4), pixel edges, read from the
    runs (no decode); same values as :func:`masks_to_xyxy` of the decoded masks (an empty
    mask gets (0, 0, 0, 0))."""
    from pycocotools import mask as mask_utils

    if len(rles) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    xywh = np.asarray(mask_utils.toBbox(_coco_rles(rles)), dtype=np.float32).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def masks_to_xyxy(masks: np.ndarray) -> np.ndarray:
    """bool (N, H, W) masks -> tight xyxy boxes, float32 (N, 4), pixel edges.

    A mask covering columns 3..5 gets x1 = 3, x2 = 6 (matches COCO's ``toBbox``). An empty
    mask gets (0, 0, 0, 0).
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {masks.shape}")
    n = masks.shape[0]
    out = np.zeros((n, 4), dtype=np.float32)
    if n == 0:
        return out
    cols = masks.any(axis=1)  # (N, W)
    rows = masks.any(axis=2)  # (N, H)
    nonempty = cols.any(axis=1)
    w = masks.shape[2]
    h = masks.shape[1]
    x1 = cols.argmax(axis=1)
    x2 = w - cols[:, ::-1].argmax(axis=1)
    y1 = rows.argmax(axis=1)
    y2 = h - rows[:, ::-1].argmax(axis=1)
    out[:] = np.stack([x1, y1, x2, y2], axis=1)
    out[~nonempty] = 0
    return out


def mask_area(masks: np.ndarray) -> np.ndarray:
    """Pixel count of each bool (N, H, W) mask, int64 (N,)."""
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:  # a single (H, W) mask would silently give per-row counts
        raise ValueError(f"masks must have shape (N, H, W), got {masks.shape}")
    return masks.sum(axis=(1, 2), dtype=np.int64)
