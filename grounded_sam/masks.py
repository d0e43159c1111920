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
    """Uncompressed COCO run lengths of a bool (H, W) mask, int64 (K,).

    Runs are found without making the column-major copy of the whole mask: only the columns
    between the first and last one holding a pixel are read, transitions within a column
    come from comparing neighbouring rows (row-major, cache-friendly), and only the
    transitions (O(perimeter) for a solid object) are sorted into column-major order.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:  # any other shape: its column-major order as one column
        m = m.ravel(order="F")[:, None]
    h, w = m.shape
    if m.size == 0:
        return np.zeros(0, dtype=np.int64)
    cols = np.flatnonzero(m.any(axis=0))
    if cols.size == 0:
        return np.array([h * w], dtype=np.int64)
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    sub = m[:, c0:c1]
    rows, cc = np.nonzero(sub[1:] != sub[:-1])  # a run starts at row rows + 1 of column cc
    parts = [(cc.astype(np.int64) + c0) * h + rows + 1]
    # column-major order continues from the last row of a column to the first of the next
    j = np.flatnonzero(sub[0, 1:] != sub[-1, :-1]) + 1
    parts.append((j.astype(np.int64) + c0) * h)
    if c0 > 0 and sub[0, 0]:  # the columns before c0 are all zeros
        parts.append(np.array([c0 * h], dtype=np.int64))
    if c1 < w and sub[-1, -1]:  # so are the columns from c1 on
        parts.append(np.array([c1 * h], dtype=np.int64))
    starts = np.sort(np.concatenate(parts))
    counts = np.diff(np.concatenate([[0], starts, [h * w]]))
    if m[0, 0]:
        counts = np.concatenate([[0], counts])
    return counts.astype(np.int64)


def _compress(counts: np.ndarray) -> str:
    """COCO's compressed string of run lengths (``maskApi.c``'s ``rleToString``), vectorised.

    Counts from the third on are stored as differences to the count two places back; each
    value is written as little-endian 5-bit groups of its two's complement, as few as hold
    it, one character (``48 + group``, plus 32 when more groups follow) per group.
    """
    c = np.asarray(counts, dtype=np.int64)
    if c.size == 0:
        return ""
    x = c.copy()
    x[3:] -= c[1:-2]
    # groups needed: the smallest n with -2**(5n-1) <= x < 2**(5n-1)
    n = np.ones(len(x), dtype=np.int64)
    for k in range(1, 13):
        n += (x >= 1 << (5 * k - 1)) | (x < -(1 << (5 * k - 1)))
    value = np.repeat(x, n)
    first = np.cumsum(n) - n  # position of each value's first group
    group = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(first, n)
    chars = (value >> (5 * group)) & 0x1F
    chars[group < np.repeat(n - 1, n)] |= 0x20
    return (chars + 48).astype(np.uint8).tobytes().decode("ascii")


def _decompress(s: str | bytes) -> np.ndarray:
    """Inverse of :func:`_compress`: run lengths, int64 (K,). Raises ValueError if malformed."""
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
