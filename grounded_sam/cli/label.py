"""``grounded-sam label``: label a folder of images into a COCO / YOLO / PNG dataset."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any

from grounded_sam.cli.common import (
    EXIT_CODES,
    EXIT_OK,
    EXIT_SKIPPED,
    THREADS_HELP,
    Formatter,
    UsageError,
    add_precision_options,
    add_report_options,
    comma_list,
    malloc_note,
    non_negative,
    positive,
    precision_from_args,
    unit,
)
from grounded_sam.models import registry

DETECTORS = (
    "grounding-dino-tiny",
    "grounding-dino-base",
    "groundingdino-swint-ogc",
    "groundingdino-swinb-cogcoor",
    "clip",
)
SAM_TYPES = registry.SAM_CHOICES
FORMATS = ("coco", "yolo", "png", "labelstudio")


def detector_arg(text: str) -> str:
    """A name of :data:`DETECTORS`, or a Grounding DINO folder / original ``.pth`` on disk."""
    from grounded_sam.models.registry import local_entry

    if text in DETECTORS or local_entry(text) is not None:
        return text
    raise argparse.ArgumentTypeError(
        f"{text!r} is neither one of {', '.join(DETECTORS)} nor a Grounding DINO folder "
        "(with config.json) or an original .pth file"
    )


def shard_arg(text: str) -> Any:
    from grounded_sam.autolabel.shards import Shard

    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def formats_list(text: str) -> list[str]:
    names = comma_list(text.lower())
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown format(s) {', '.join(bad) or '(none)'}; choose from {','.join(FORMATS)}"
        )
    return names


def val_fraction(text: str) -> float:
    """``--yolo-val``: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), e.g. 0.2, got {text!r}")
    return value


def add_label(commands: Any) -> None:
    p = commands.add_parser(
        "label",
        help="label a folder of images: COCO / YOLO / PNG masks, resumable",
        formatter_class=Formatter,
        epilog=malloc_note() + "\n" + EXIT_CODES,
        description=(
            "Detect the classes in every image, segment them with SAM, and write a dataset.\n"
            "Results are saved per image as they finish; run the same command again after an\n"
            "interruption and it resumes where it stopped, writing the same files as an\n"
            "uninterrupted run. Images that cannot be read are skipped and listed.\n\n"
            "A dataset too big for one machine: run shard K of N on each machine (or several\n"
            "processes on one) into one shared OUT with --shard K/N and the same arguments,\n"
            "then `grounded-sam merge OUT` writes the exports (see docs/DISTRIBUTED.md).\n\n"
            "examples:\n"
            '  grounded-sam label photos/ -o labels/ --classes "cat,dog"\n'
            "  grounded-sam label 'photos/**/*.jpg' -o labels/ --prompt \"cat . dog\" "
            "--formats coco,yolo\n"
            "  grounded-sam label photos/ -o labels/ --classes cat --fast   # bf16 on AMX CPUs\n"
            "  grounded-sam label photos/ -o /tmp/smoke --classes cat --tiny-random\n"
            '  grounded-sam label /shared/photos -o /shared/labels --classes "cat,dog" '
            "--shard 0/4"
        ),
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGES",
        help="a folder (searched recursively), a quoted glob pattern, or image files",
    )
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="output folder")
    p.add_argument(
        "--follow-symlinks",
        action="store_true",
        help="open symbolic links in the IMAGES folder whose targets lie outside it "
        "(default: list them in errors.jsonl, unopened)",
    )
    what = p.add_argument_group("what to find (give --classes, --prompt or both)")
    what.add_argument(
        "--classes",
        type=comma_list,
        metavar="A,B,...",
        help="class names of the dataset, comma-separated, in category order",
    )
    what.add_argument(
        "--prompt",
        metavar="TEXT",
        help='detector prompt, classes separated by " . " (default: the classes)',
    )
    what.add_argument(
        "--synonym",
        action="append",
        default=[],
        metavar="CLASS=ALIAS",
        help="another phrase that maps to CLASS (repeatable), e.g. --synonym cat=kitten",
    )
    out = p.add_argument_group("output")
    out.add_argument(
        "--formats",
        type=formats_list,
        default=["coco"],
        metavar="LIST",
        help="comma-separated: coco (annotations.coco.json), yolo (yolo/), png (masks/), "
        "labelstudio (labelstudio/: tasks with brush pre-annotations, config.xml); "
        "default: coco",
    )
    out.add_argument(
        "--yolo-images",
        choices=("link", "copy", "none"),
        default="link",
        help="how the YOLO export places the images under yolo/images/ so that "
        "yolo/data.yaml trains as written: link (symbolic links; copies where refused), copy, "
        "or none (place them yourself); default: %(default)s",
    )
    out.add_argument(
        "--yolo-val",
        type=val_fraction,
        default=0.0,
        metavar="F",
        help="fraction of the images in the YOLO validation set (images/val, labels/val), "
        "e.g. 0.2; default 0: no split, train and val both name yolo/images",
    )
    out.add_argument(
        "--yolo-seed",
        type=int,
        default=0,
        metavar="S",
        help="seed of that split (default: %(default)s)",
    )
    out.add_argument(
        "--overwrite",
        action="store_true",
        help="discard results that OUT holds from an earlier run (of any configuration); "
        "not with --shard",
    )
    out.add_argument(
        "--shard",
        type=shard_arg,
        metavar="K/N",
        help="label only shard K (0 … N-1) of N, into an OUT that the other shards share; "
        "then `grounded-sam merge OUT`",
    )
    add_report_options(out)
    engine = p.add_argument_group(
        "engine (docs/DISTRIBUTED.md)",
        "--engine ray: Ray Data reads the images and a pool of actors labels them, each actor "
        "building the models once; OUT must be a folder every Ray node sees at the same path. "
        'Needs pip install "grounded-sam[ray]"',
    )
    engine.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process (default); ray: a Ray cluster, or a local Ray",
    )
    engine.add_argument(
        "--address",
        metavar="ADDR",
        help="the Ray cluster to join: auto (the one `ray start --head` runs on this machine), "
        "HOST:6379, or ray://HOST:10001 (default: $RAY_ADDRESS, else a new local Ray)",
    )
    engine.add_argument(
        "--actors", type=positive, default=1, metavar="N", help="Ray actors labelling at once"
    )
    engine.add_argument(
        "--cpus-per-actor",
        type=float,
        default=1.0,
        metavar="C",
        help="CPUs Ray reserves for each actor (its torch threads; default: %(default)s)",
    )
    engine.add_argument(
        "--gpus-per-actor",
        type=float,
        default=0.0,
        metavar="G",
        help="GPUs Ray reserves for each actor, e.g. 1, or 0.5 for two actors on one GPU "
        "(default: %(default)s: CPU only)",
    )
    models = p.add_argument_group("models")
    models.add_argument(
        "--sam", default="vit_b", choices=SAM_TYPES, help="SAM model (default: %(default)s)"
    )
    models.add_argument(
        "--detector",
        default="grounding-dino-tiny",
        type=detector_arg,
        metavar="NAME|PATH",
        help=f"{', '.join(DETECTORS)}, a Grounding DINO folder (e.g. written by `grounded-sam "
        "convert`) or an original .pth; clip: SAM's automatic masks scored by CLIP "
        "(default: %(default)s)",
    )
    models.add_argument(
        "--device", help="cpu, cuda, cuda:1 … (default: cuda when available, else cpu)"
    )
    add_precision_options(models, dtype=True)
    models.add_argument("--threads", type=positive, metavar="N", help=THREADS_HELP)
    models.add_argument(
        "--models-dir",
        metavar="DIR",
        help="checkpoint folder (default: $GROUNDED_SAM_MODELS or ./models)",
    )
    models.add_argument(
        "--tiny-random",
        action="store_true",
        help="tiny untrained models instead of checkpoints: a smoke run, outputs are meaningless",
    )
    tune = p.add_argument_group("thresholds and filters (values T in [0, 1])")
    tune.add_argument(
        "--box-threshold", type=unit, metavar="T", help="Grounding DINO box score (default 0.35)"
    )
    tune.add_argument(
        "--text-threshold",
        type=unit,
        metavar="T",
        help="Grounding DINO token score for a word to enter a phrase (default 0.25)",
    )
    tune.add_argument(
        "--clip-threshold", type=unit, metavar="T", help="CLIP class probability (default 0.3)"
    )
    tune.add_argument(
        "--review-score",
        type=unit,
        metavar="T",
        help="flag detections whose detector score is below T for review (default 0.5)",
    )
    tune.add_argument(
        "--review-mask-score",
        type=unit,
        metavar="T",
        help="flag masks whose SAM IoU score is below T for review (default 0.8)",
    )
    tune.add_argument(
        "--top-k", type=positive, metavar="K", help="keep the K best detections per image"
    )
    tune.add_argument(
        "--min-mask-area",
        type=non_negative,
        default=0,
        metavar="PIXELS",
        help="drop masks of fewer pixels (default: 0, keep all)",
    )
    tune.add_argument(
        "--refine-boxes", action="store_true", help="replace boxes by the tight boxes of the masks"
    )
    p.set_defaults(run=cmd_label)


def cmd_label(args: argparse.Namespace) -> int:
    import grounded_sam as gs
    from grounded_sam.autolabel import list_images
    from grounded_sam.classes import parse_classes
    from grounded_sam.cli.common import set_threads, tune_malloc

    tune_malloc()  # process-wide, before any model allocates; GROUNDED_SAM_NO_MALLOC_TUNING=1: off
    set_threads(args.threads)

    if not args.classes and not args.prompt:
        raise UsageError("label needs --classes or --prompt (or both)")
    if args.shard is not None and args.overwrite:
        raise UsageError(
            "--overwrite cannot be combined with --shard: it would delete the other shards' "
            "results. Delete OUT (or use a new folder) once, before starting the shards"
        )
    classes = parse_classes(args.classes or args.prompt)
    synonyms: dict[str, list[str]] = {}
    for item in args.synonym:
        name, sep, alias = item.partition("=")
        if not sep or not name.strip() or not alias.strip():
            raise UsageError(f"--synonym takes CLASS=ALIAS, got {item!r}")
        synonyms.setdefault(name.strip(), []).append(alias.strip())

    options: dict[str, Any] = {
        "top_k": args.top_k,
        "min_mask_area": args.min_mask_area,
        "refine_boxes_from_masks": args.refine_boxes,
    }
    for option, value in (
        ("synonyms", synonyms or None),
        ("box_threshold_accept", args.review_score),
        ("mask_threshold_accept", args.review_mask_score),
    ):
        if value is not None:
            options[option] = value
    clip = args.detector == "clip"
    detector_options = {
        k: v
        for k, v in (
            ("score_threshold", args.clip_threshold if clip else None),
            ("box_threshold", None if clip else args.box_threshold),
            ("text_threshold", None if clip else args.text_threshold),
        )
        if v is not None
    }
    images = args.images[0] if len(args.images) == 1 else args.images
    precision = precision_from_args(args)  # a usage error before any image is listed
    list_images(images, exclude=args.out)  # no images: fail before loading models for minutes
    if args.engine == "local" and (args.address or args.actors != 1 or args.gpus_per_actor):
        raise UsageError("--address, --actors and --gpus-per-actor need --engine ray")
    models = {"device": args.device, "precision": precision, "detector_options": detector_options}
    # one recipe: the local engine calls it here, the Ray engine in each of its actors
    if args.tiny_random:
        kind = "clip" if clip else "grounding-dino"
        recipe = functools.partial(
            gs.Pipeline.tiny_random, classes, kind, sam=args.sam, **models, **options
        )
    else:
        recipe = functools.partial(
            gs.Pipeline.from_registry,
            args.sam,
            args.detector,
            models_dir=args.models_dir,
            **models,
            **options,
        )
    summary = gs.auto_label(
        recipe() if args.engine == "local" else recipe,
        images,
        classes,
        args.out,
        formats=args.formats,
        prompt=args.prompt,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        shard=args.shard,
        follow_symlinks=args.follow_symlinks,
        yolo_images=args.yolo_images,
        yolo_val=args.yolo_val,
        yolo_seed=args.yolo_seed,
        engine=args.engine,
        ray_address=args.address,
        actors=args.actors,
        num_cpus_per_actor=args.cpus_per_actor,
        num_gpus_per_actor=args.gpus_per_actor,
    )
    skipped = report(summary, as_json=args.json)
    if summary.shard is not None and not args.json:
        print(
            f"shard {summary.shard} done; when every shard has finished: "
            f"grounded-sam merge {summary.out_dir}"
        )
    return EXIT_SKIPPED if skipped and args.fail_on_skip else EXIT_OK


def report(summary: Any, *, as_json: bool) -> bool:
    """Print ``summary`` (a ``LabelSummary``) on stdout, as text or JSON, and its skipped
    images on stderr. Returns whether some images were skipped."""
    if as_json:
        print(json.dumps({**summary.to_dict(), "out_dir": summary.out_dir}, indent=2))
    else:
        _print_summary(summary)
    if summary.skipped:
        from grounded_sam.autolabel.outputs import output_names
        from grounded_sam.autolabel.shards import Shard

        errors = output_names(Shard.parse(summary.shard) if summary.shard else None)[1]
        print(
            f"warning: {len(summary.skipped)} image(s) could not be labelled and were skipped "
            f"(listed in {summary.out_dir}/{errors})",
            file=sys.stderr,
        )
        if not as_json:
            for s in summary.skipped:
                print(f"  {s['path']}: {s['reason']}", file=sys.stderr)
    return bool(summary.skipped)


def _print_summary(summary: Any) -> None:
    what = f"shard {summary.shard}: " if summary.shard else ""
    of = "images of this shard" if summary.shard else "images"
    earlier = f", {summary.run_resumed} of them by an earlier run" if summary.run_resumed else ""
    run = (
        f"; this run: {summary.run_labelled} images in {summary.run_seconds:.1f} s "
        f"({summary.run_images_per_second:.2f} images/s)"
        if summary.run_seconds
        else ""
    )
    print(
        f"{what}labelled {summary.images_labelled} of {summary.images_total} {of} into "
        f"{summary.out_dir}{earlier}{run}"
    )
    per_class = ", ".join(f"{k} {v}" for k, v in summary.detections_per_class.items())
    print(
        f"detections: {summary.detections_total} ({per_class}, no class "
        f"{summary.detections_without_class}); {summary.review_count} flagged for review"
    )
    from grounded_sam.autolabel.outputs import EXPORT_CONTENTS

    exported = summary.exported or {}
    for fmt, path in summary.files.items():
        count = f" — {exported[fmt]} {EXPORT_CONTENTS[fmt]}" if fmt in exported else ""
        print(f"{fmt}: {summary.out_dir}/{path}{count}")
    left_out = [f for f in ("coco", "yolo", "labelstudio") if f in summary.files]
    if summary.detections_without_class and left_out:
        print(
            f"note: the {summary.detections_without_class} detections without a class are not in "
            f"{' or '.join(left_out)} (those need a class); the png export keeps them, and "
            f"--synonym CLASS=PHRASE maps a phrase to a class"
        )
    if "yolo" in summary.files:
        print(f"train: yolo segment train data={summary.out_dir}/yolo/data.yaml")
    if "labelstudio" in summary.files:
        print(f"review: how to import into Label Studio: {summary.out_dir}/labelstudio/README.txt")
