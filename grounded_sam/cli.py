"""The ``grounded-sam`` command: label a folder, evaluate a labelling, fetch models, inspect.

    grounded-sam label IMAGES -o OUT --classes "cat,dog"     # COCO / YOLO / PNG dataset
    grounded-sam eval predictions.json ground_truth.json     # COCO AP table
    grounded-sam download sam_vit_b grounding-dino-tiny      # checkpoints into models/
    grounded-sam info                                        # versions, device, models

Exit codes: 0 success; 1 failure (the message says what to do); 2 usage error; 3 ``label
--fail-on-skip`` when some images could not be read; 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

DEBUG_ENV = "GROUNDED_SAM_DEBUG"
EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_SKIPPED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EXIT_CODES = """\
exit codes:
  0    success
  1    failure: missing model files, unreadable input, another run's results in OUT …
       (the message says what to do)
  2    usage error (bad option or argument)
  3    label --fail-on-skip only: everything else was labelled, but some images could not
       be read (they are listed, and in OUT/errors.jsonl)
  130  interrupted (Ctrl-C); `label` resumes when run again with the same arguments
"""

DETECTORS = ("grounding-dino-tiny", "grounding-dino-base", "clip")
SAM_TYPES = ("vit_b", "vit_l", "vit_h")
FORMATS = ("coco", "yolo", "png")


_Formatter = argparse.RawDescriptionHelpFormatter  # keeps the hand-wrapped descriptions


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _formats(text: str) -> list[str]:
    names = _comma_list(text.lower())
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"unknown format(s) {', '.join(bad) or '(none)'}; choose from {','.join(FORMATS)}"
        )
    return names


def _unit(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


# ---------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    from grounded_sam import __version__

    parser = argparse.ArgumentParser(
        prog="grounded-sam",
        description=(
            "Text prompt in, instance masks out: an open-vocabulary detector (Grounding DINO,\n"
            "or SAM's automatic masks scored by CLIP) composed with Segment Anything.\n"
            "Run `grounded-sam COMMAND --help` for the options of a command."
        ),
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"grounded-sam {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_label(commands)
    _add_eval(commands)
    _add_download(commands)
    _add_info(commands)
    return parser


def _add_label(commands: Any) -> None:
    p = commands.add_parser(
        "label",
        help="label a folder of images: COCO / YOLO / PNG masks, resumable",
        formatter_class=_Formatter,
        epilog=EXIT_CODES,
        description=(
            "Detect the classes in every image, segment them with SAM, and write a dataset.\n"
            "Results are saved per image as they finish; run the same command again after an\n"
            "interruption and it resumes where it stopped, writing the same files as an\n"
            "uninterrupted run. Images that cannot be read are skipped and listed.\n\n"
            "examples:\n"
            '  grounded-sam label photos/ -o labels/ --classes "cat,dog"\n'
            "  grounded-sam label 'photos/**/*.jpg' -o labels/ --prompt \"cat . dog\" "
            "--formats coco,yolo\n"
            "  grounded-sam label photos/ -o /tmp/smoke --classes cat --tiny-random"
        ),
    )
    p.add_argument(
        "images",
        nargs="+",
        metavar="IMAGES",
        help="a folder (searched recursively), a quoted glob pattern, or image files",
    )
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="output folder")
    what = p.add_argument_group("what to find (give --classes, --prompt or both)")
    what.add_argument(
        "--classes",
        type=_comma_list,
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
        type=_formats,
        default=["coco"],
        metavar="LIST",
        help="comma-separated: coco (annotations.coco.json), yolo (yolo/), png (masks/); "
        "default: coco",
    )
    out.add_argument(
        "--overwrite",
        action="store_true",
        help="discard results that OUT holds from an earlier run (of any configuration)",
    )
    out.add_argument(
        "--fail-on-skip",
        action="store_true",
        help="exit with code 3 when some images could not be read (default: exit 0, list them)",
    )
    out.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    models = p.add_argument_group("models")
    models.add_argument(
        "--sam", default="vit_b", choices=SAM_TYPES, help="SAM model (default: %(default)s)"
    )
    models.add_argument(
        "--detector",
        default="grounding-dino-tiny",
        choices=DETECTORS,
        help="clip: SAM's automatic masks scored by CLIP (default: %(default)s)",
    )
    models.add_argument(
        "--device", help="cpu, cuda, cuda:1 … (default: cuda when available, else cpu)"
    )
    models.add_argument(
        "--dtype",
        default=None,
        choices=("fp32", "bf16", "fp16"),
        help="compute dtype of SAM's image encoder (default: fp32)",
    )
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
        "--box-threshold", type=_unit, metavar="T", help="Grounding DINO box score (default 0.35)"
    )
    tune.add_argument(
        "--text-threshold",
        type=_unit,
        metavar="T",
        help="Grounding DINO token score for a word to enter a phrase (default 0.25)",
    )
    tune.add_argument(
        "--clip-threshold", type=_unit, metavar="T", help="CLIP class probability (default 0.3)"
    )
    tune.add_argument(
        "--review-score",
        type=_unit,
        metavar="T",
        help="flag detections whose detector score is below T for review (default 0.5)",
    )
    tune.add_argument(
        "--review-mask-score",
        type=_unit,
        metavar="T",
        help="flag masks whose SAM IoU score is below T for review (default 0.8)",
    )
    tune.add_argument(
        "--top-k", type=_positive, metavar="K", help="keep the K best detections per image"
    )
    tune.add_argument(
        "--min-mask-area",
        type=_non_negative,
        default=0,
        metavar="PIXELS",
        help="drop masks of fewer pixels (default: 0, keep all)",
    )
    tune.add_argument(
        "--refine-boxes", action="store_true", help="replace boxes by the tight boxes of the masks"
    )
    p.set_defaults(run=cmd_label)


def _add_eval(commands: Any) -> None:
    p = commands.add_parser(
        "eval",
        help="COCO box and mask AP of predictions against ground truth",
        formatter_class=_Formatter,
        epilog=EXIT_CODES,
        description=(
            "Compare predictions (a COCO file written by `grounded-sam label`, or a COCO\n"
            "results list) with ground truth (a COCO file) using pycocotools. Images are matched\n"
            "by file_name and categories by name, so a labelled subset of a folder works.\n\n"
            "example:\n"
            "  grounded-sam eval labels/annotations.coco.json checked.json --json"
        ),
    )
    p.add_argument("predictions", help="predictions: COCO JSON with scores, or a results list")
    p.add_argument("ground_truth", help="ground truth: COCO JSON")
    p.add_argument(
        "--iou-types",
        type=_comma_list,
        default=["bbox", "segm"],
        metavar="LIST",
        help="comma-separated: bbox, segm (default: both)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(run=cmd_eval)


def _add_download(commands: Any) -> None:
    p = commands.add_parser(
        "download",
        help="fetch model checkpoints (sha256-verified) into the models folder",
        formatter_class=_Formatter,
        epilog=EXIT_CODES,
        description=(
            "Fetch checkpoints listed in the registry, with a progress bar and sha256 check.\n"
            "This is the only command that uses the network.\n\n"
            "examples:\n"
            "  grounded-sam download --list\n"
            "  grounded-sam download sam_vit_b grounding-dino-tiny"
        ),
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="registry names (see --list)")
    p.add_argument("--all", action="store_true", help="every model of the registry")
    p.add_argument("--list", action="store_true", help="list the models and whether they are here")
    p.add_argument("--models-dir", metavar="DIR", help="default: $GROUNDED_SAM_MODELS or ./models")
    p.add_argument("--force", action="store_true", help="fetch files that are already present")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_download)


def _add_info(commands: Any) -> None:
    p = commands.add_parser(
        "info",
        help="versions, device, bf16 support, and which models are present",
        formatter_class=_Formatter,
        epilog=EXIT_CODES,
        description="What this installation can run: versions, device and the model files.",
    )
    p.add_argument("--models-dir", metavar="DIR", help="default: $GROUNDED_SAM_MODELS or ./models")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(run=cmd_info)


# ---------------------------------------------------------------------- commands
def cmd_label(args: argparse.Namespace) -> int:
    import grounded_sam as gs
    from grounded_sam.autolabel import list_images
    from grounded_sam.pipeline import parse_classes

    if not args.classes and not args.prompt:
        raise _UsageError("label needs --classes or --prompt (or both)")
    classes = parse_classes(args.classes or args.prompt)
    synonyms: dict[str, list[str]] = {}
    for item in args.synonym:
        name, sep, alias = item.partition("=")
        if not sep or not name.strip() or not alias.strip():
            raise _UsageError(f"--synonym takes CLASS=ALIAS, got {item!r}")
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
    list_images(images, exclude=args.out)  # no images: fail before loading models for minutes
    if args.tiny_random:
        pipe = gs.Pipeline.tiny_random(
            classes,
            "clip" if clip else "grounding-dino",
            device=args.device,
            detector_options=detector_options,
            **options,
        )
    else:
        pipe = gs.Pipeline.from_registry(
            sam=args.sam,
            detector=args.detector,
            device=args.device,
            models_dir=args.models_dir,
            detector_options=detector_options,
            segmenter_options={"dtype": args.dtype} if args.dtype else None,
            **options,
        )
    summary = gs.auto_label(
        pipe,
        images,
        classes,
        args.out,
        formats=args.formats,
        prompt=args.prompt,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    if args.json:
        print(json.dumps({**summary.to_dict(), "out_dir": summary.out_dir}, indent=2))
    else:
        _print_summary(summary)
    if summary.skipped:
        print(
            f"warning: {len(summary.skipped)} image(s) could not be read and were skipped "
            f"(listed in {summary.out_dir}/errors.jsonl)",
            file=sys.stderr,
        )
        if not args.json:
            for s in summary.skipped:
                print(f"  {s['path']}: {s['reason']}", file=sys.stderr)
        if args.fail_on_skip:
            return EXIT_SKIPPED
    return EXIT_OK


def _print_summary(summary: Any) -> None:
    earlier = f", {summary.run_resumed} of them by an earlier run" if summary.run_resumed else ""
    print(
        f"labelled {summary.images_labelled} of {summary.images_total} images into "
        f"{summary.out_dir}{earlier}; this run: {summary.run_labelled} images in "
        f"{summary.run_seconds:.1f} s ({summary.run_images_per_second:.2f} images/s)"
    )
    per_class = ", ".join(f"{k} {v}" for k, v in summary.detections_per_class.items())
    print(
        f"detections: {summary.detections_total} ({per_class}, no class "
        f"{summary.detections_without_class}); {summary.review_count} flagged for review"
    )
    for fmt, path in summary.files.items():
        print(f"{fmt}: {summary.out_dir}/{path}")


def cmd_eval(args: argparse.Namespace) -> int:
    from grounded_sam.evaluation import IOU_TYPES, METRICS, evaluate

    bad = [t for t in args.iou_types if t not in IOU_TYPES]
    if bad or not args.iou_types:
        raise _UsageError(
            f"--iou-types takes {','.join(IOU_TYPES)}, got {','.join(args.iou_types)}"
        )
    result = evaluate(args.predictions, args.ground_truth, iou_types=args.iou_types)
    if args.json:
        print(json.dumps(result, indent=2))
        return EXIT_OK
    print("type  " + "".join(f"{m:>7}" for m in METRICS))
    for iou_type in args.iou_types:
        row = result[iou_type]
        # COCO reports -1 where a metric is undefined (no ground truth of that size)
        print(
            f"{iou_type:<6}"
            + "".join(f"{row[m]:>7.3f}" if row[m] >= 0 else f"{'n/a':>7}" for m in METRICS)
        )
    counts = result.get("counts")
    if counts:
        print(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items()))
    return EXIT_OK


def cmd_download(args: argparse.Namespace) -> int:
    from grounded_sam.models import download, registry

    if args.list:
        if args.names or args.all:
            raise _UsageError("--list takes no model names and no --all")
        root = registry.models_dir(args.models_dir)
        print(f"models folder: {root}")
        for name, entry in registry.REGISTRY.items():
            here = "present" if registry.is_present(entry, root) else "missing"
            size = download.human_size(entry.size)
            print(f"  {name:<22} {entry.kind:<15} {size:>10}  {here:<8} {entry.description}")
        return EXIT_OK
    if args.all == bool(args.names):
        raise _UsageError("give model names, or --all (see `grounded-sam download --list`)")
    names = list(registry.REGISTRY) if args.all else args.names
    entries = [registry.get_entry(n) for n in names]  # unknown names fail before any download
    for entry in entries:
        path = download.download(
            entry, models_dir=args.models_dir, progress=not args.no_progress, force=args.force
        )
        print(f"{entry.name}: {path}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    info = collect_info(args.models_dir)
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    dev = info["device"]
    print(f"device: {dev['default']}" + (f" ({dev['cuda_name']})" if dev["cuda_name"] else ""))
    print(f"bf16: cuda {dev['cuda_bf16']}, cpu hardware {dev['cpu_fast_bf16']}")
    print(f"models folder: {info['models_dir']}")
    for name, model in info["models"].items():
        state = "present" if model["present"] else "missing"
        print(f"  {name:<22} {state:<8} {model['path']}")
    missing = [n for n, m in info["models"].items() if not m["present"]]
    if missing:
        print(f"fetch a missing model with `grounded-sam download NAME` ({', '.join(missing)})")
    return EXIT_OK


def collect_info(models_dir: str | None = None) -> dict[str, Any]:
    """Versions, device capabilities and the registry's models present under ``models_dir``."""
    from importlib import metadata

    import torch

    from grounded_sam.models import registry
    from grounded_sam.runtime import cpu_has_fast_bf16

    versions = {}
    for dist in ("grounded-sam", "torch", "transformers", "segment-anything", "open_clip_torch"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    versions["python"] = sys.version.split()[0]
    cuda = torch.cuda.is_available()
    root = registry.models_dir(models_dir)
    return {
        "versions": versions,
        "device": {
            "default": "cuda" if cuda else "cpu",
            "cuda_available": cuda,
            "cuda_name": torch.cuda.get_device_name(0) if cuda else None,
            "cuda_bf16": bool(cuda and torch.cuda.is_bf16_supported()),
            "cpu_fast_bf16": cpu_has_fast_bf16(),
            "cpu_threads": torch.get_num_threads(),
        },
        "models_dir": str(root),
        "models": {
            name: {
                "kind": entry.kind,
                "present": registry.is_present(entry, root),
                "path": str(registry.model_path(entry, root)),
            }
            for name, entry in registry.REGISTRY.items()
        },
    }


# ---------------------------------------------------------------------- entry point
class _UsageError(Exception):
    """A combination of options argparse cannot check by itself (exit code 2)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    from grounded_sam.errors import GroundedSamError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except _UsageError as exc:
        print(f"grounded-sam {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        again = "; run the same command again to resume" if args.command == "label" else ""
        print(f"interrupted{again}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (GroundedSamError, OSError, ValueError, KeyError) as exc:
        if os.environ.get(DEBUG_ENV):
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"error: {message}", file=sys.stderr)
        print(f"(set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
