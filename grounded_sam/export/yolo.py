"""YOLO segmentation export (the Ultralytics ``*-seg`` label format) and ``data.yaml``.

Layout written under ``out_dir`` (a complete Ultralytics dataset: ``yolo train data=
out_dir/data.yaml`` trains on it as written)::

    data.yaml                  path (absolute), train, val, nc, names (written with PyYAML)
    images/<name>.<ext>        the images, linked or copied (``images="link"|"copy"``)
    labels/<name>.txt          one line per instance: ``class x1 y1 x2 y2 ...``

With a train/val split (``split`` given) the images and labels go one level deeper, under
``images/train`` + ``labels/train`` and ``images/val`` + ``labels/val``; without one,
``train`` and ``val`` both name ``images`` (validation on the training images: fine for a
smoke test, not for model selection). Ultralytics finds an image's label by replacing the
last ``/images/`` of its path with ``/labels/``, which is why the images are placed here.
``path`` in ``data.yaml`` is the dataset folder's absolute path; after moving the folder,
delete the ``path`` line (Ultralytics then uses the folder holding ``data.yaml``) or edit it.

Each line is a 0-based class index followed by the polygon's vertices, normalised by the
image size (``x / W``, ``y / H``, 6 decimals). A vertex is the pixel index of a boundary
pixel, as Ultralytics' own mask converter writes them: ``round(x * W)`` gives the pixel back,
and ``cv2.fillPoly`` of the denormalised rings redraws the mask.

What the format can and cannot express:

- **One polygon per line, one line per instance.** A mask with several parts either becomes
  one polygon whose parts are joined by zero-width "bridges" (``mode="merge"``, the default,
  as Ultralytics' COCO converter does; the instance count is kept, and a rasteriser draws
  each bridge as a one-pixel line), or one line per part (``mode="split"``; each part is
  exact, but a training tool then counts each part as its own instance).
- **No holes.** YOLO has no hole syntax. Holes are cut into their part's polygon through a
  zero-width bridge (a "keyhole"), so ``fillPoly`` leaves them empty: with ``mode="split"``
  this redraws a mask with holes exactly; with ``"merge"`` exactly except the bridge
  pixels between parts. Tools that fill polygons differently may fill a hole's bridge line.
- **A bounded cost.** A mask with more than ``MAX_PARTS`` (64) separate parts keeps its 64
  largest in the polygon(s), and one with more than ``MAX_HOLES`` (64) holes keeps its 64
  largest holes (the smaller ones are filled). Real masks (smooth blobs) are far below both;
  speckled masks (random weights) lose their smallest specks, and a 640x480 mask of 50 %
  noise takes well under a second instead of half a minute. COCO and PNG keep every pixel.
- No scores, no review flags and no "unknown" class: detections with ``class_id == -1`` are
  left out (counted in ``dropped_unknown``); use the COCO or PNG export to keep them.

Contours come from OpenCV (``opencv-python-headless``), imported when first needed.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from grounded_sam.export._io import atomic_write_text, relative_output_path
from grounded_sam.types import Detections

_MODES = ("merge", "split")
IMAGE_MODES = ("link", "copy", "none")
SUBSETS = ("train", "val")
_MST_MAX_PARTS = 64
# The worst case bound: a speckled mask (e.g. random weights) has thousands of one-pixel
# parts and holes, and bridging them all costs seconds per mask. Beyond these counts only the
# largest parts and holes of a mask are kept; see the module docstring.
MAX_PARTS = 64
MAX_HOLES = 64


def _nearest(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """Indices (i, j) of the closest pair a[i], b[j] of two (K, 2) point lists."""
    # an upper bound from one cheap alternating step, then only points that can beat it
    i0 = int(((a - b[0]) ** 2).sum(1).argmin())
    j0 = int(((b - a[i0]) ** 2).sum(1).argmin())
    bound = float(np.sqrt(((a[i0] - b[j0]) ** 2).sum()))
    ia = np.flatnonzero(((a >= b.min(0) - bound) & (a <= b.max(0) + bound)).all(1))
    ib = np.flatnonzero(((b >= a[ia].min(0) - bound) & (b <= a[ia].max(0) + bound)).all(1))
    best = (float(((a[i0] - b[j0]) ** 2).sum()), i0, j0)
    step = max(1, 2_000_000 // max(len(ib), 1))  # bound the distance matrix's memory
    for s in range(0, len(ia), step):
        rows = ia[s : s + step]
        d = ((a[rows, None, :] - b[None, ib, :]) ** 2).sum(-1)
        i, j = divmod(int(d.argmin()), d.shape[1])
        if d[i, j] < best[0]:
            best = (float(d[i, j]), int(rows[i]), int(ib[j]))
    return best[1], best[2]


def _bridge(base: np.ndarray, rings: Sequence[np.ndarray]) -> np.ndarray:
    """Join ``rings`` into ``base`` with zero-width bridges: one closed (K, 2) polygon.

    Each ring is entered from its point nearest to ``base``, walked once around and left the
    same way; the bridge is traversed twice in opposite directions, so it encloses no area and
    the even-odd and non-zero fill rules both see the original rings.
    """
    if not rings:
        return base
    attach: dict[int, list[np.ndarray]] = {}
    for ring in rings:
        i, j = _nearest(base, ring)
        detour = np.concatenate([ring[j:], ring[: j + 1], base[i : i + 1]])
        attach.setdefault(i, []).append(detour)
    pieces = []
    for i in range(len(base)):
        pieces.append(base[i : i + 1])
        pieces.extend(attach.get(i, []))
    return np.concatenate(pieces)


def _join_parts(polys: list[np.ndarray], areas: list[float]) -> np.ndarray:
    """Bridge several part polygons into one, keeping the bridges short.

    Up to ``_MST_MAX_PARTS`` parts are joined along a minimum spanning tree of the gaps between
    their bounding boxes (Prim's algorithm from the largest part), each bridge between the
    nearest points of the two parts it joins, so the one-pixel bridge lines a rasteriser draws
    stay short. Beyond that every part hangs off the largest one.
    """
    n = len(polys)
    root = min(range(n), key=lambda i: (-areas[i], i))
    parent = {i: root for i in range(n) if i != root}
    if n <= _MST_MAX_PARTS:
        # the gap between the parts' bounding boxes: one vectorised (n, n) step, where the
        # exact nearest points of every pair cost n^2 / 2 searches (seconds for 64 parts);
        # the exact nearest points are found only for the n - 1 bridges built
        lo = np.array([q.min(0) for q in polys], dtype=np.float64)
        hi = np.array([q.max(0) for q in polys], dtype=np.float64)
        gap = np.maximum(0.0, np.maximum(lo[:, None] - hi[None], lo[None] - hi[:, None]))
        dist = (gap**2).sum(-1)
        np.fill_diagonal(dist, np.inf)
        best = dist[root].copy()
        done = {root}
        while len(done) < n:
            k = min((i for i in range(n) if i not in done), key=lambda i: (best[i], i))
            done.add(k)
            for i in range(n):
                if i not in done and dist[k, i] < best[i]:
                    best[i], parent[i] = dist[k, i], k
    children: dict[int, list[int]] = {}
    for child, par in sorted(parent.items()):
        children.setdefault(par, []).append(child)

    def build(k: int) -> np.ndarray:
        return _bridge(polys[k], [build(c) for c in children.get(k, [])])

    return build(root)


def mask_to_polygons(mask: np.ndarray, *, mode: str = "merge") -> list[np.ndarray]:
    """Outline a bool (H, W) mask as YOLO polygons, in pixel coordinates.

    Returns a list of int32 (K, 2) arrays of (x, y) pixel indices, K >= 3 (a one- or two-pixel
    part repeats its last vertex). ``mode="merge"``: at most one polygon, all parts and holes
    bridged together; ``mode="split"``: one polygon per connected part (8-connected), with its
    holes. An empty mask gives ``[]``. See the module docstring for what fills back exactly.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must have shape (H, W), got {mask.shape}")
    if not mask.any():
        return []
    import cv2  # a dependency; imported here so that importing the package stays light

    contours, hierarchy = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    hierarchy = hierarchy.reshape(-1, 4)  # next, previous, first child, parent
    rings = [c.reshape(-1, 2).astype(np.int64) for c in contours]
    outer = [k for k in range(len(rings)) if hierarchy[k, 3] < 0]  # the rest are holes
    if len(outer) > MAX_PARTS:  # keep the largest (in contour order among them)
        outer = sorted(sorted(outer, key=lambda k: -cv2.contourArea(contours[k]))[:MAX_PARTS])
    holes_of = {k: [] for k in outer}
    for k in outer:
        child = int(hierarchy[k, 2])
        while child >= 0:
            holes_of[k].append(child)
            child = int(hierarchy[child, 0])
    every_hole = [c for k in outer for c in holes_of[k]]
    if len(every_hole) > MAX_HOLES:
        kept = set(sorted(every_hole, key=lambda c: -cv2.contourArea(contours[c]))[:MAX_HOLES])
        holes_of = {k: [c for c in cs if c in kept] for k, cs in holes_of.items()}
    parts = [(cv2.contourArea(contours[k]), k, [rings[c] for c in holes_of[k]]) for k in outer]
    polys = [_bridge(rings[k], holes) for _, k, holes in parts]
    if mode == "merge" and len(polys) > 1:
        polys = [_join_parts(polys, [a for a, _, _ in parts])]
    out = []
    for p in polys:
        if len(p) < 3:
            p = np.concatenate([p, np.repeat(p[-1:], 3 - len(p), axis=0)])
        out.append(p.astype(np.int32))
    return out


def yolo_lines(detections: Detections, *, mode: str = "merge") -> list[str]:
    """YOLO-seg label lines of one image's detections (those with a class and a non-empty mask).

    Lines are ``"<class_id> x1 y1 x2 y2 ..."`` with coordinates normalised by the image size.
    """
    if len(detections) and detections.masks is None:
        raise ValueError(
            "YOLO segmentation export needs masks, but the detections have none: run the "
            "segment step (Pipeline.segment) first"
        )
    h, w = detections.image_size
    lines = []
    for i in range(len(detections)):
        cid = int(detections.class_id[i])
        if cid < 0:
            continue
        assert detections.masks is not None
        for poly in mask_to_polygons(detections.masks[i], mode=mode):
            xy = poly.astype(np.float64) / np.array([w, h], dtype=np.float64)
            coords = " ".join(f"{v:.6f}" for v in xy.reshape(-1))
            lines.append(f"{cid} {coords}")
    return lines


def polygons_from_line(line: str, image_size: tuple[int, int]) -> tuple[int, np.ndarray]:
    """Parse one label line back into (class index, int32 (K, 2) pixel polygon)."""
    values = line.split()
    h, w = image_size
    xy = np.array(values[1:], dtype=np.float64).reshape(-1, 2) * np.array([w, h])
    return int(values[0]), np.round(xy).astype(np.int32)


class YoloWriter:
    """Writes YOLO-seg labels per image, places the images and writes ``data.yaml``;
    resumable (a finished image's label file exists, written atomically).

    Args:
        out_dir: the dataset folder (``labels/``, ``images/`` and ``data.yaml`` go here).
        classes: class names; line class indices are their 0-based positions.
        mode: ``"merge"`` (one line per instance) or ``"split"`` (one line per part).
        images: how each image given to :meth:`add` is placed under ``out_dir/images/``:
            ``"link"`` (a symbolic link to the original; a copy where the file system refuses
            links), ``"copy"``, or ``"none"`` (default here, for detections of images that
            are not files; ``auto_label`` links: put the images under ``images/`` yourself
            before training). ``None`` means ``"none"`` and
            ``"symlink"`` means ``"link"`` (older spellings).
        split: ``{output name: "train" | "val"}`` (see
            :func:`grounded_sam.export.split.train_val_split`), or ``None``: no split, one
            ``images/`` folder used for both.
    """

    def __init__(
        self,
        out_dir: str | Path,
        classes: Sequence[str],
        *,
        mode: str = "merge",
        images: str | None = "none",
        split: dict[str, str] | None = None,
    ):
        from grounded_sam.export.coco import _check_classes

        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        images = {None: "none", "symlink": "link"}.get(images, images)
        if images not in IMAGE_MODES:
            raise ValueError(f"images must be one of {IMAGE_MODES}, got {images!r}")
        bad = sorted({v for v in (split or {}).values()} - set(SUBSETS))
        if bad:
            raise ValueError(f"split values must be 'train' or 'val', got {bad}")
        self.out_dir = Path(out_dir)
        self.classes = _check_classes(classes)
        self.mode = mode
        self.images = images
        self.split = split
        self.dropped_unknown = 0

    def _sub(self, file_name: str) -> Path:
        """``""`` without a split, else ``train`` / ``val`` (a name not in it: ``train``)."""
        if self.split is None:
            return Path()
        return Path(self.split.get(file_name, "train"))

    def label_path(self, file_name: str) -> Path:
        """``out_dir/labels[/train|/val]/<file_name with .txt>``."""
        rel = relative_output_path(file_name, ".txt")
        return self.out_dir / "labels" / self._sub(file_name) / rel

    def image_path(self, file_name: str) -> Path:
        """``out_dir/images[/train|/val]/<file_name>``: where :meth:`add` places the image."""
        rel = relative_output_path(file_name, Path(file_name).suffix)
        return self.out_dir / "images" / self._sub(file_name) / rel

    def __contains__(self, file_name: object) -> bool:
        if not isinstance(file_name, str) or not self.label_path(file_name).exists():
            return False
        img = self.image_path(file_name)
        return self.images == "none" or img.exists() or img.is_symlink()

    def add(
        self,
        file_name: str,
        detections: Detections,
        *,
        image_path: str | Path | None = None,
        output_name: str | None = None,
    ) -> Path:
        """Write the label file of one image (empty for an image without detections).

        ``image_path`` is the image on disk, placed under ``out_dir/images/`` unless the writer
        was made with ``images="none"``. ``output_name`` (default ``file_name``) names the
        files written (``labels/<output_name with .txt>``, ``images/<output_name>``), e.g. a
        name made safe by :func:`grounded_sam.autolabel.names.output_names`. Returns the
        label file's path.
        """
        name = file_name if output_name is None else output_name
        if (detections.class_id >= len(self.classes)).any():
            raise ValueError(
                f"class_id out of range for {len(self.classes)} classes {self.classes}; run "
                f"the label step with this class list first"
            )
        lines = yolo_lines(detections, mode=self.mode)
        self.dropped_unknown += int((detections.class_id < 0).sum())
        if self.images != "none":
            if image_path is None:
                raise ValueError(
                    f"images={self.images!r} needs image_path for {file_name!r} (or make the "
                    f"writer with images='none' and place the images yourself)"
                )
            self._place_image(name, Path(image_path))
        path = self.label_path(name)
        atomic_write_text(path, "".join(line + "\n" for line in lines))
        return path

    def _place_image(self, file_name: str, src: Path) -> None:
        dst = self.image_path(file_name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        if dst.is_symlink() and self.images == "link" and dst.resolve() == src.resolve():
            return
        if dst.exists() or dst.is_symlink():
            dst.unlink()
        if self.images == "link":
            try:
                os.symlink(src.resolve(), dst)
                return
            except OSError:  # e.g. Windows without the right to make links: copy instead
                pass
        tmp = dst.with_name(f".{dst.name}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)

    def data_yaml(self) -> dict:
        """The content of ``data.yaml``: ``path``, ``train``, ``val``, ``nc``, ``names``."""
        if self.split is None:
            train = val = "images"
        else:
            train = "images/train"
            # no validation image (a one-image dataset): validate on the training images
            val = "images/val" if "val" in self.split.values() else "images/train"
        return {
            "path": str(self.out_dir.resolve()),
            "train": train,
            "val": val,
            "nc": len(self.classes),
            "names": dict(enumerate(self.classes)),
        }

    def write_data_yaml(self) -> Path:
        """Write ``out_dir/data.yaml`` (:meth:`data_yaml`, with ``yaml.safe_dump``)."""
        import yaml

        head = (
            "# YOLO segmentation dataset written by grounded-sam; train with\n"
            "#   yolo segment train data=<this file> model=yolov8n-seg.pt\n"
            "# path: this folder; after moving it, delete the path line (Ultralytics then\n"
            "# uses the folder of this file) or edit it.\n"
        )
        body = yaml.safe_dump(self.data_yaml(), sort_keys=False, allow_unicode=True)
        return atomic_write_text(self.out_dir / "data.yaml", head + body)
