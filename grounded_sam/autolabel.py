"""``auto_label``: label a folder of images with a pipeline; resumable; a bad image is skipped.

Layout of ``out_dir``::

    .state/config.json           what produces the results (prompt, classes, pipeline settings)
    .state/<image key>.json      one file per image, written atomically as soon as it finishes
    annotations.coco.json, …     the exports, rebuilt from the per-image files at the end
    errors.jsonl                 images that could not be read, one {"file_name", "path", "reason"}
    summary.json                 images done and skipped, detections per class, review count

The exports are built from the per-image files in sorted file-name order, with ids taken from
that order, so a run interrupted at any point (Ctrl-C, ``kill -9``) and restarted with the same
arguments skips the finished images and writes the same files as a run never interrupted.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grounded_sam.errors import GroundedSamError, ImageError
from grounded_sam.pipeline import parse_classes

STATE_DIR = ".state"
STATE_VERSION = 1
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)
FORMATS = ("coco", "yolo", "png")


class ConfigMismatchError(GroundedSamError, RuntimeError):
    """``out_dir`` holds results of another configuration (prompt, classes, thresholds …)."""


@dataclass(frozen=True)
class ImageItem:
    """One input image: ``path`` on disk, ``file_name`` relative to the dataset root (posix,
    as written into the exports) and ``key``, a stable name for its state file."""

    path: Path
    file_name: str

    @property
    def key(self) -> str:
        return hashlib.sha1(self.file_name.encode("utf-8")).hexdigest()[:20]


@dataclass
class LabelSummary:
    """What a labelling run did. ``to_dict()`` (written to ``summary.json``) is the same for an
    interrupted-and-resumed run as for an uninterrupted one; the ``run_*`` fields are not in it."""

    out_dir: str
    classes: list[str]
    images_total: int
    images_labelled: int
    skipped: list[dict[str, str]]  # {"file_name", "path", "reason"}, sorted by file_name
    detections_total: int
    detections_per_class: dict[str, int]
    detections_without_class: int
    review_count: int
    files: dict[str, str]  # format -> path of the export
    run_resumed: int = 0  # images finished by an earlier run and not labelled again
    run_labelled: int = 0  # images labelled by this run
    run_seconds: float = 0.0
    run_images_per_second: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": self.classes,
            "images_total": self.images_total,
            "images_labelled": self.images_labelled,
            "images_skipped": len(self.skipped),
            "skipped": self.skipped,
            "detections_total": self.detections_total,
            "detections_per_class": self.detections_per_class,
            "detections_without_class": self.detections_without_class,
            "review_count": self.review_count,
            "files": self.files,
        }


# ---------------------------------------------------------------------- listing the inputs
def list_images(
    images: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    exclude: str | os.PathLike | None = None,
) -> list[ImageItem]:
    """The images of a folder (recursive, by extension), a glob pattern or a list of paths.

    ``file_name`` is relative to the folder, or to the deepest folder that holds every match
    or listed path. Files under ``exclude`` (the output folder) and hidden folders are left out.
    The result is sorted by ``file_name``; listed paths that do not exist are kept (they are
    reported as skipped when labelled).

    Raises:
        FileNotFoundError: nothing matched.
    """
    excluded = Path(exclude).resolve() if exclude is not None else None

    def keep(p: Path) -> bool:
        return excluded is None or not (p == excluded or excluded in p.parents)

    if isinstance(images, str | os.PathLike):
        source = Path(images).expanduser()
        if source.is_dir():
            root = source.resolve()
            paths = [
                p
                for p in root.rglob("*")
                if p.suffix.lower() in IMAGE_EXTENSIONS
                and p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(root).parts)
                and keep(p)
            ]
            what = f"folder {source} (extensions {', '.join(sorted(IMAGE_EXTENSIONS))})"
        elif source.exists():
            paths = [source.resolve()]
            root = paths[0].parent
            what = str(source)
        else:
            paths = [Path(p).resolve() for p in glob.glob(str(source), recursive=True)]
            paths = [p for p in paths if p.is_file() and keep(p)]
            root = _common_root(paths)
            what = f"pattern {str(source)!r}"
    else:
        paths = [Path(p).expanduser().resolve() for p in images]
        root = _common_root(paths)
        what = "the list of images"
    if not paths:
        raise FileNotFoundError(f"no images found in {what}")
    unique = {p: ImageItem(p, Path(os.path.relpath(p, root)).as_posix()) for p in paths}
    return sorted(unique.values(), key=lambda item: item.file_name)


def _common_root(paths: Sequence[Path]) -> Path:
    return Path(os.path.commonpath([str(p.parent) for p in paths])) if paths else Path.cwd()


# ---------------------------------------------------------------------- state on disk
def _atomic_write_json(path: Path, obj: Any) -> None:
    from grounded_sam.export._io import atomic_write_text

    atomic_write_text(path, json.dumps(obj, sort_keys=True, ensure_ascii=False) + "\n")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): obj}


def _prepare_state(state: Path, config: dict[str, Any]) -> None:
    """Create ``state`` for ``config``, or check that the one there was made with ``config``."""
    path = state / "config.json"
    previous = _read_json(path) if path.exists() else None
    if previous is not None:
        canonical = json.loads(json.dumps(config, sort_keys=True))
        if previous != canonical:
            old, new = _flatten(previous), _flatten(canonical)
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            details = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:6])
            raise ConfigMismatchError(
                f"{state.parent} holds results of another configuration ({details}). Use a new "
                f"output folder, or pass overwrite=True (`--overwrite`) to discard them."
            )
        return
    state.mkdir(parents=True, exist_ok=True)
    _atomic_write_json(path, config)


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _is_done(state: Path, item: ImageItem) -> bool:
    record = _read_json(state / f"{item.key}.json")
    return (
        isinstance(record, dict)
        and record.get("version") == STATE_VERSION
        and record.get("status") == "ok"
        and record.get("file_name") == item.file_name
        and record.get("stat") == list(_stat(item.path) or ())
    )


# ---------------------------------------------------------------------- decoding ahead
_END = object()


def _prefetch(
    items: Sequence[ImageItem], depth: int
) -> Iterator[tuple[ImageItem, Any, str | None]]:
    """Yield ``(item, image or None, error reason or None)`` in order; a thread decodes up to
    ``depth`` images ahead so that decoding overlaps inference while memory stays bounded."""
    from grounded_sam.image import load_image

    slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(value: Any) -> None:
        while not stop.is_set():
            try:
                slots.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                try:
                    put((item, load_image(item.path), None))
                except ImageError as exc:
                    put((item, None, exc.reason))
                except Exception as exc:  # any decoder failure is this image's problem only
                    put((item, None, f"{type(exc).__name__}: {exc}"))
        finally:
            put(_END)  # whatever happens here, the consumer is not left waiting

    thread = threading.Thread(target=work, name="grounded-sam-decode", daemon=True)
    thread.start()
    try:
        while (value := slots.get()) is not _END:
            yield value
    finally:
        stop.set()
        thread.join(timeout=10)


# ---------------------------------------------------------------------- the run
def auto_label(
    pipeline: Any,
    images: str | os.PathLike | Iterable[str | os.PathLike],
    classes: Sequence[str] | str,
    out_dir: str | os.PathLike,
    *,
    formats: Sequence[str] | str = ("coco",),
    prompt: str | None = None,
    resume: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    prefetch: int = 2,
) -> LabelSummary:
    """Label every image of a folder, glob or list with ``pipeline`` and export a dataset.

    Args:
        pipeline: a :class:`grounded_sam.Pipeline` (anything with ``__call__(image, prompt,
            classes=...) -> Detections`` and ``config() -> dict``).
        images: a folder (searched recursively for image files), a glob pattern such as
            ``"data/**/*.jpg"``, or a list of paths.
        classes: the class names, in category order (``["cat", "dog"]`` or ``"cat . dog"``).
        out_dir: the output folder (see the module docstring for its layout).
        formats: any of ``"coco"`` (``annotations.coco.json``), ``"yolo"`` (``yolo/``),
            ``"png"`` (``masks/``); a list or a comma-separated string.
        prompt: the detector prompt (default: the classes joined with ``" . "``).
        resume: skip images whose results an earlier run with the same configuration saved.
            ``False`` labels every image again.
        overwrite: discard the results of an earlier run, even of another configuration.
        progress: show a tqdm progress bar (images/s) on stderr.
        prefetch: how many decoded images may wait for the model (memory bound).

    Returns:
        A :class:`LabelSummary`; its ``to_dict()`` is also written to ``out_dir/summary.json``.

    Raises:
        ConfigMismatchError: ``out_dir`` holds results of another prompt, classes or pipeline
            settings (use a new folder or ``overwrite=True``).
        FileNotFoundError: no images found.
    """
    classes = parse_classes(classes)
    prompt = prompt if prompt is not None else " . ".join(classes)
    formats = _check_formats(formats)
    out = Path(out_dir).expanduser()
    items = list_images(images, exclude=out)
    state = out / STATE_DIR
    config = {
        "version": STATE_VERSION,
        "prompt": prompt,
        "classes": classes,
        "pipeline": pipeline.config(),
    }
    if overwrite:
        for name in (STATE_DIR, *EXPORT_PATHS.values()):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    _prepare_state(state, config)

    exports = _Exports(out, classes, formats)
    pending = [it for it in items if not (resume and _is_done(state, it))]
    resumed = len(items) - len(pending)
    started = time.perf_counter()
    _label_images(
        pipeline, pending, prompt, classes, state, exports, progress, prefetch, resumed, len(items)
    )
    seconds = time.perf_counter() - started

    summary = _finish(out, items, classes, exports)
    summary.run_resumed = resumed
    summary.run_labelled = len(pending)
    summary.run_seconds = seconds
    summary.run_images_per_second = len(pending) / seconds if seconds > 0 else 0.0
    return summary


def _check_formats(formats: Sequence[str] | str) -> list[str]:
    names = formats.split(",") if isinstance(formats, str) else list(formats)
    names = [n.strip().lower() for n in names if n.strip()]
    unknown = sorted(set(names) - set(FORMATS))
    if unknown or not names:
        raise ValueError(f"unknown export format(s) {unknown}; choose from {', '.join(FORMATS)}")
    return [f for f in FORMATS if f in names]


class _Exports:
    """The export writers of one run. Per-image formats (YOLO, PNG) are written as each image
    finishes; the COCO file, which holds every image, is built at the end."""

    def __init__(self, out: Path, classes: list[str], formats: list[str]):
        self.out, self.classes, self.formats = out, classes, formats
        self.yolo = self.png = None
        if "yolo" in formats:
            from grounded_sam.export.yolo import YoloWriter

            self.yolo = YoloWriter(out / EXPORT_PATHS["yolo"], classes)
        if "png" in formats:
            from grounded_sam.export.png import PngWriter

            self.png = PngWriter(out, classes)  # writes out/masks/<name>.png + .json

    def add_image(self, file_name: str, detections: Any, *, only_missing: bool = False) -> None:
        for writer in (self.yolo, self.png):
            if writer is not None and not (only_missing and file_name in writer):
                writer.add(file_name, detections)

    def files(self) -> dict[str, str]:
        return {f: EXPORT_PATHS[f] for f in self.formats}


def _label_images(
    pipeline: Any,
    pending: Sequence[ImageItem],
    prompt: str,
    classes: list[str],
    state: Path,
    exports: _Exports,
    progress: bool,
    prefetch: int,
    resumed: int,
    total: int,
) -> None:
    from tqdm.auto import tqdm

    segmenter = getattr(pipeline, "segmenter", None)
    clear_cache = getattr(segmenter, "clear_cache", None)  # no image comes twice: free memory
    bar = tqdm(total=total, initial=resumed, unit="img", desc="labelling", disable=not progress)
    decoded = _prefetch(pending, prefetch)
    try:
        for item, image, reason in decoded:
            record: dict[str, Any] = {
                "version": STATE_VERSION,
                "file_name": item.file_name,
                "path": str(item.path),
                "stat": list(_stat(item.path) or ()),
            }
            if image is not None:
                try:
                    detections = pipeline(image, prompt, classes=classes)
                except ImageError as exc:  # e.g. an image the model cannot take
                    reason = exc.reason
                except Exception as exc:
                    if hasattr(exc, "add_note"):  # Python >= 3.11
                        exc.add_note(
                            f"while labelling {item.path}; the images finished before it are "
                            f"saved: run again with the same arguments to resume"
                        )
                    raise
                else:
                    exports.add_image(item.file_name, detections)
                    record.update(status="ok", detections=detections.to_dict())
                del image
                if callable(clear_cache):
                    clear_cache()
            if reason is not None:
                record.update(status="error", reason=reason)
                if progress:
                    bar.write(f"skipped {item.file_name}: {reason}", file=sys.stderr)
            # written last: a state file on disk means this image and its exports are finished
            _atomic_write_json(state / f"{item.key}.json", record)
            bar.update(1)
    finally:
        decoded.close()
        bar.close()


def _finish(
    out: Path, items: Sequence[ImageItem], classes: list[str], exports: _Exports
) -> LabelSummary:
    """Build the COCO file, errors.jsonl and summary.json from the per-image state files, one
    image at a time (masks are held as RLE only), in the order of ``items``."""
    from grounded_sam.export._io import atomic_write_text
    from grounded_sam.types import Detections

    coco = None
    if "coco" in exports.formats:
        from grounded_sam.export.coco import CocoWriter

        coco = CocoWriter(classes)
    state = out / STATE_DIR
    skipped: list[dict[str, str]] = []
    per_class = dict.fromkeys(classes, 0)
    labelled = without = review = total = 0
    for image_id, item in enumerate(items, start=1):
        record = _read_json(state / f"{item.key}.json") or {}
        if record.get("status") != "ok":
            reason = record.get("reason", "not labelled")
            skipped.append({"file_name": item.file_name, "path": str(item.path), "reason": reason})
            continue
        dets = Detections.from_dict(record["detections"])
        labelled += 1
        total += len(dets)
        for cid in dets.class_id.tolist():
            if 0 <= cid < len(classes):
                per_class[classes[cid]] += 1
            else:
                without += 1
        review += _review_count(dets)
        if coco is not None:
            coco.add({"file_name": item.file_name}, dets, image_id=image_id)
        exports.add_image(item.file_name, dets, only_missing=True)

    if coco is not None:
        coco.write(out / EXPORT_PATHS["coco"])
    if exports.yolo is not None:
        exports.yolo.write_data_yaml()
    errors = "".join(json.dumps(s, sort_keys=True, ensure_ascii=False) + "\n" for s in skipped)
    atomic_write_text(out / "errors.jsonl", errors)
    summary = LabelSummary(
        out_dir=str(out),
        classes=classes,
        images_total=len(items),
        images_labelled=labelled,
        skipped=skipped,
        detections_total=total,
        detections_per_class=per_class,
        detections_without_class=without,
        review_count=review,
        files=exports.files(),
    )
    _atomic_write_json(out / "summary.json", summary.to_dict())
    return summary


def _review_count(dets: Any) -> int:
    flags = dets.data.get("needs_review")
    return 0 if flags is None else int(sum(bool(f) for f in flags))


EXPORT_PATHS = {"coco": "annotations.coco.json", "yolo": "yolo", "png": "masks"}
