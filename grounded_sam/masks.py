"""Binary masks: COCO run-length encoding (RLE), boxes and areas from masks.

RLE here is COCO's: the mask is read in column-major (Fortran) order, runs alternate
0, 1, 0, … starting with a (possibly empty) run of zeros, and the compressed form packs the
counts into an ASCII string exactly as pycocotools' ``maskApi.c`` does, so the output is
readable by pycocotools and every COCO tool without this package.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def rle_counts(mask: np.ndarray) -> np.ndarray:
    """Uncompressed COCO run lengths of a bool (H, W) mask, int64 (K,)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    if flat.size == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds)
    if flat[0]:
        counts = np.concatenate([[0], counts])
    return counts.astype(np.int64)


def _compress(counts: np.ndarray) -> str:
    out: list[str] = []
    cnts = [int(c) for c in counts]
    for i, c in enumerate(cnts):
        x = c - cnts[i - 2] if i > 2 else c
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5
            more = x != -1 if ch & 0x10 else x != 0
            if more:
                ch |= 0x20
            out.append(chr(ch + 48))
    return "".join(out)


def _decompress(s: str | bytes) -> list[int]:
    if isinstance(s, bytes):
        s = s.decode("ascii")
    cnts: list[int] = []
    p = 0
    while p < len(s):
        x = 0
        k = 0
        more = True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(cnts) > 2:
            x += cnts[-2]
        cnts.append(x)
    return cnts


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """bool (H, W) mask -> COCO compressed RLE ``{"size": [H, W], "counts": str}`` (utf-8 text)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {mask.shape}")
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _compress(rle_counts(mask))}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (compressed string/bytes counts, or an uncompressed list) -> bool (H, W) mask."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a COCO RLE dict with 'size' and 'counts': {rle!r:.200}") from e
    cnts = _decompress(counts) if isinstance(counts, str | bytes) else [int(c) for c in counts]
    if sum(cnts) != h * w:
        raise ValueError(f"RLE counts sum to {sum(cnts)} but size {h}x{w} needs {h * w}")
    values = np.zeros(len(cnts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, cnts)
    return flat.reshape((h, w), order="F")


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
