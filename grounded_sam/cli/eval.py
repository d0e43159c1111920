"""``grounded-sam eval``: COCO box and mask AP of predictions against ground truth."""

from __future__ import annotations

import argparse
import json
from typing import Any

from grounded_sam.cli.common import EXIT_CODES, EXIT_OK, Formatter, UsageError, comma_list


def add_eval(commands: Any) -> None:
    p = commands.add_parser(
        "eval",
        help="COCO box and mask AP of predictions against ground truth",
        formatter_class=Formatter,
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
        type=comma_list,
        default=["bbox", "segm"],
        metavar="LIST",
        help="comma-separated: bbox, segm (default: both)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(run=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    from grounded_sam.evaluation import IOU_TYPES, METRICS, evaluate

    bad = [t for t in args.iou_types if t not in IOU_TYPES]
    if bad or not args.iou_types:
        raise UsageError(f"--iou-types takes {','.join(IOU_TYPES)}, got {','.join(args.iou_types)}")
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
