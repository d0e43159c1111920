"""``auto_label``: the labelling loop over a folder, glob or list of images (or one shard of it)."""

from __future__ import annotations

import errno
import os
import shutil
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from grounded_sam.autolabel.outputs import (
    EXPORT_PATHS,
    Exports,
    LabelSummary,
    build_outputs,
    check_formats,
)
from grounded_sam.autolabel.prefetch import prefetch as prefetch_images
from grounded_sam.autolabel.shards import Shard, write_manifest
from grounded_sam.autolabel.sources import ImageItem, list_images
from grounded_sam.autolabel.state import (
    STATE_DIR,
    STATE_VERSION,
    is_done,
    new_record,
    prepare_state,
    record_path,
    write_json,
)
from grounded_sam.classes import parse_classes
from grounded_sam.errors import ImageError


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
    shard: Shard | tuple[int, int] | str | None = None,
    follow_symlinks: bool = False,
    yolo_images: str = "link",
    yolo_val: float = 0.0,
    yolo_seed: int = 0,
    engine: str = "local",
    ray_address: str | None = None,
    actors: int = 1,
    num_cpus_per_actor: float = 1.0,
    num_gpus_per_actor: float = 0.0,
) -> LabelSummary:
    """Label every image of a folder, glob or list with ``pipeline`` and export a dataset.

    Args:
        pipeline: a :class:`grounded_sam.Pipeline` (anything with ``__call__(image, prompt,
            classes=...) -> Detections`` and ``config() -> dict``), or a function of no
            arguments that builds one (``functools.partial(gs.Pipeline.from_registry, ...)``;
            required by ``engine="ray"``, where every actor builds its own).
        images: a folder (searched recursively for image files), a glob pattern such as
            ``"data/**/*.jpg"``, or a list of paths.
        classes: the class names, in category order (``["cat", "dog"]`` or ``"cat . dog"``).
        out_dir: the output folder (see :mod:`grounded_sam.autolabel` for its layout).
        formats: any of ``"coco"`` (``annotations.coco.json``), ``"yolo"`` (``yolo/``),
            ``"png"`` (``masks/``), ``"labelstudio"`` (``labelstudio/``); a list or a
            comma-separated string. COCO, YOLO and Label Studio hold the detections with a
            class and a non-empty mask; PNG every detection (``LabelSummary.exported``).
        prompt: the detector prompt (default: the classes joined with ``" . "``).
        resume: skip images whose results an earlier run with the same configuration saved.
            ``False`` labels every image again.
        overwrite: discard the results of an earlier run, even of another configuration.
        progress: show a tqdm progress bar (images/s) on stderr.
        prefetch: how many decoded images may wait for the model (memory bound).
        shard: ``(index, count)`` (or ``"K/N"``): label only the images of shard ``index``
            (0-based) of ``count``, chosen by a hash of each image's relative file name, into
            an ``out_dir`` that the other shards share (a network folder; several processes on
            one machine work too). Every shard must be given the same images, classes, prompt
            and pipeline settings. The shard writes its per-image results and
            ``summary.shard-K-of-N.json`` / ``errors.shard-K-of-N.jsonl``; when every shard
            has finished, :func:`~grounded_sam.autolabel.merge.merge_shards` (``grounded-sam
            merge OUT``) writes the exports, the same as one unsharded run would.
        follow_symlinks: open symbolic links in the ``images`` folder whose targets lie
            outside it. Off by default: such a link is listed in ``errors.jsonl`` instead.
        yolo_images: how the YOLO export places the images under ``yolo/images/`` so that
            ``yolo/data.yaml`` trains as written: ``"link"`` (default; symbolic links, copies
            where links are refused), ``"copy"``, or ``"none"`` (place them yourself).
        yolo_val: the fraction of images the YOLO export puts in its validation set
            (``images/val``, ``labels/val``); ``0`` (default): no split, ``train`` and ``val``
            both name ``images``.
        yolo_seed: the seed of that split (the same images, seed and fraction always give
            the same split).
        engine: ``"local"`` (this process) or ``"ray"``: Ray Data reads the images and a pool
            of ``actors`` labels them, each actor building the pipeline once, into the same
            ``out_dir`` (which every Ray node must see at the same path); the same files as
            the local engine (docs/DISTRIBUTED.md). Needs ``pip install "grounded-sam[ray]"``.
        ray_address: the Ray cluster to join (``"auto"``, ``"ray://head:10001"``; ``None``:
            the Ray this process runs, else a new local one, shut down at the end).
        actors / num_cpus_per_actor / num_gpus_per_actor: the size of the Ray actor pool and
            what Ray reserves for each actor (its torch threads are its CPUs).

    Returns:
        A :class:`LabelSummary`; its ``to_dict()`` is also written to ``out_dir/summary.json``
        (for a shard: only that shard's images, in ``summary.shard-K-of-N.json``).

    Raises:
        ConfigMismatchError: ``out_dir`` holds results of another prompt, classes or pipeline
            settings (use a new folder or ``overwrite=True``).
        FileNotFoundError: no images found.
        ValueError: a bad ``shard``, or ``overwrite=True`` with a shard (it would delete the
            other shards' work: empty the folder once before starting them).
    """
    classes = parse_classes(classes)
    prompt = prompt if prompt is not None else " . ".join(classes)
    formats = check_formats(formats)
    shard = Shard.parse(shard) if shard is not None else None
    if shard is not None and overwrite:
        raise ValueError(
            f"overwrite=True (`--overwrite`) cannot be combined with a shard ({shard}): it would "
            f"delete the results of the other shards in the shared folder. Delete {out_dir} (or "
            f"use a new folder) once, before starting the shards."
        )
    if shard is not None and (yolo_images != "link" or yolo_val):
        raise ValueError(
            "yolo_images/yolo_val (`--yolo-images`, `--yolo-val`) cannot be combined with a "
            "shard yet: `merge` writes the YOLO export with linked images and no split. Run "
            "without them, or label in one run"
        )
    if engine not in ("local", "ray"):
        raise ValueError(f'engine must be "local" or "ray", got {engine!r}')
    out = Path(out_dir).expanduser()
    items = list_images(images, exclude=out, follow_symlinks=follow_symlinks)
    ray_run = None
    if engine == "ray":
        from grounded_sam.autolabel.ray_engine import RayRun

        ray_run = RayRun.start(
            pipeline,
            address=ray_address,
            actors=actors,
            num_cpus_per_actor=num_cpus_per_actor,
            num_gpus_per_actor=num_gpus_per_actor,
        )
    try:
        return _run(
            pipeline,
            ray_run,
            items,
            out,
            classes=classes,
            prompt=prompt,
            formats=formats,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            prefetch=prefetch,
            shard=shard,
            yolo_images=yolo_images,
            yolo_val=yolo_val,
            yolo_seed=yolo_seed,
        )
    finally:
        if ray_run is not None:
            ray_run.close()


def describe_run(pipeline_config: dict[str, Any], *, prompt: str, classes: list[str]) -> dict:
    """What produces a run's results: its fingerprint is in every record (``.state/``)."""
    return {
        "version": STATE_VERSION,
        "prompt": prompt,
        "classes": classes,
        "pipeline": pipeline_config,
    }


def _run(
    pipeline: Any,
    ray_run: Any,
    items: list[ImageItem],
    out: Path,
    *,
    classes: list[str],
    prompt: str,
    formats: list[str],
    resume: bool,
    overwrite: bool,
    progress: bool,
    prefetch: int,
    shard: Shard | None,
    yolo_images: str,
    yolo_val: float,
    yolo_seed: int,
) -> LabelSummary:
    """``auto_label`` after its checks: the same steps for every engine (``ray_run``: a
    :class:`~.ray_engine.RayRun`, or ``None`` for this process)."""
    state = out / STATE_DIR
    if ray_run is not None:
        pipeline_config = ray_run.describe()
    else:
        if not callable(getattr(pipeline, "config", None)):
            pipeline = pipeline()  # a recipe: build it here
        pipeline_config = pipeline.config()
    config = describe_run(pipeline_config, prompt=prompt, classes=classes)
    if overwrite:
        for name in (STATE_DIR, *EXPORT_PATHS.values()):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        for stale in (
            *out.glob("summary.shard-*-of-*.json"),
            *out.glob("errors.shard-*-of-*.jsonl"),
        ):
            stale.unlink()
    fingerprint = prepare_state(state, config)
    # an unsharded run is the one shard of one: `merge` can rebuild its exports too
    mine = write_manifest(state, shard or Shard(0, 1), items, config=fingerprint, formats=formats)

    exports_args = {
        "out": out,
        "classes": classes,
        "formats": formats,
        "file_names": [it.file_name for it in items],
        "yolo_images": yolo_images,
        "yolo_val": yolo_val,
        "yolo_seed": yolo_seed,
    }
    exports = Exports(**exports_args)
    pending = [it for it in mine if not (resume and is_done(state, it, fingerprint))]
    resumed = len(mine) - len(pending)
    started = time.perf_counter()
    if ray_run is not None:
        ray_run.label(
            pending,
            run_config=config,
            fingerprint=fingerprint,
            state=state,
            exports=exports_args,
            progress=progress,
            done=resumed,
            total=len(mine),
        )
    else:
        _label_images(
            pipeline,
            pending,
            prompt=prompt,
            classes=classes,
            state=state,
            config=fingerprint,
            exports=exports,
            progress=progress,
            prefetch=prefetch,
            done=resumed,
            total=len(mine),
        )
    seconds = time.perf_counter() - started

    summary = build_outputs(out, mine, classes, exports, config=fingerprint, shard=shard)
    summary.run_resumed = resumed
    summary.run_labelled = len(pending)
    summary.run_seconds = seconds
    summary.run_images_per_second = len(pending) / seconds if seconds > 0 else 0.0
    return summary


def _label_images(
    pipeline: Any,
    pending: Sequence[ImageItem],
    *,
    prompt: str,
    classes: list[str],
    state: Path,
    config: str,
    exports: Exports,
    progress: bool,
    prefetch: int,
    done: int,
    total: int,
) -> None:
    """Label ``pending``, writing each image's exports, then its state record (with the
    configuration fingerprint ``config``). ``done`` of ``total`` were finished before."""
    from tqdm.auto import tqdm

    segmenter = getattr(pipeline, "segmenter", None)
    clear_cache = getattr(segmenter, "clear_cache", None)  # no image comes twice: free memory
    bar = tqdm(total=total, initial=done, unit="img", desc="labelling", disable=not progress)
    decoded = prefetch_images(pending, prefetch)
    try:
        for item, image, reason in decoded:
            record = label_and_record(
                pipeline,
                item,
                image,
                reason,
                prompt=prompt,
                classes=classes,
                state=state,
                config=config,
                exports=exports,
            )
            if image is not None:
                del image
                if callable(clear_cache):
                    clear_cache()
            if record["status"] == "error" and progress:
                bar.write(f"skipped {item.file_name}: {record['reason']}", file=sys.stderr)
            bar.update(1)
    finally:
        decoded.close()
        bar.close()


def label_and_record(
    pipeline: Any,
    item: ImageItem,
    image: Any,
    reason: str | None,
    *,
    prompt: str,
    classes: list[str],
    state: Path,
    config: str,
    exports: Exports,
) -> dict[str, Any]:
    """The work of one image in every engine (local loop, Ray actor): label the decoded
    ``image`` (RGB uint8 (H, W, 3); ``None`` when it could not be read, ``reason`` saying
    why), write its per-image exports, then its state record; returns the record.

    The record (``status`` ``"ok"`` with ``detections``, or ``"error"`` with ``reason``) is
    written last and atomically: a record on disk means the image and its exports are
    finished, so an image done twice (a retried task) writes the same files again.
    """
    record = new_record(item, config)
    if image is not None:
        reason = _label_one(pipeline, item, image, prompt, classes, exports, record)
    if reason is not None:
        record.update(status="error", reason=reason)
    write_json(record_path(state, item), record)
    return record


# Failures that would fail every later image as well: the run stops and says which file.
_FATAL_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT})


def _label_one(
    pipeline: Any,
    item: ImageItem,
    image: Any,
    prompt: str,
    classes: list[str],
    exports: Exports,
    record: dict[str, Any],
) -> str | None:
    """Label and export one decoded image into ``record``; the reason it failed, or None.

    Any failure of this image (the model refusing it, an export error) is its reason; only a
    full or read-only disk stops the run (every later image would fail the same way).
    """
    try:
        detections = pipeline(image, prompt, classes=classes)
        payload = detections.to_dict()
    except ImageError as exc:  # e.g. an image the model cannot take
        return exc.reason
    except Exception as exc:
        return _describe(exc)
    try:
        exports.add_image(item.file_name, detections, image_path=item.path)
    except Exception as exc:
        try:
            exports.discard_image(item.file_name)  # no export of an image listed as failed
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno in _FATAL_ERRNOS:
            if hasattr(exc, "add_note"):  # Python >= 3.11
                exc.add_note(
                    f"while labelling {item.path}; the images finished before it are saved: "
                    "free space (or make the folder writable) and run again to resume"
                )
            raise
        return f"export failed: {_describe(exc)}"
    record.update(status="ok", detections=payload)
    return None


def _describe(exc: BaseException) -> str:
    """``"TypeName: message"`` for errors.jsonl (project errors: just the message)."""
    from grounded_sam.errors import GroundedSamError

    text = str(exc) or repr(exc)
    return text if isinstance(exc, GroundedSamError) else f"{type(exc).__name__}: {text}"
