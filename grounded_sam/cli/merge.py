"""``grounded-sam merge``: the exports of a dataset labelled in shards (``label --shard K/N``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from grounded_sam.cli.common import (
    EXIT_CODES,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_SKIPPED,
    Formatter,
    add_report_options,
    positive,
)


def add_merge(commands: Any) -> None:
    from grounded_sam.cli.label import formats_list

    p = commands.add_parser(
        "merge",
        help="write the exports of a folder labelled in shards (label --shard K/N)",
        formatter_class=Formatter,
        epilog=EXIT_CODES,
        description=(
            "Once every shard of `grounded-sam label ... --shard K/N` has finished, build the\n"
            "COCO / YOLO / PNG exports, errors.jsonl and summary.json of OUT from the shards'\n"
            "per-image results: the same files, byte for byte, as one unsharded run. Reads no\n"
            "image and loads no model. When a shard has not finished it says how many images\n"
            "each one still lacks and exits with code 4 (unless --allow-partial).\n\n"
            "examples:\n"
            "  grounded-sam merge /shared/labels\n"
            "  grounded-sam merge /shared/labels --formats coco,yolo --json"
        ),
    )
    p.add_argument("out", metavar="OUT", help="the output folder the shards labelled into")
    p.add_argument(
        "--formats",
        type=formats_list,
        metavar="LIST",
        help="comma-separated: coco, yolo, png, labelstudio (default: the formats the shards "
        "were run with)",
    )
    p.add_argument(
        "--shards",
        type=positive,
        metavar="N",
        help="merge the run split N ways (only needed when OUT holds runs split in several ways)",
    )
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="write the exports from the images labelled so far even if a shard has not finished",
    )
    add_report_options(p)
    p.set_defaults(run=cmd_merge)


def cmd_merge(args: argparse.Namespace) -> int:
    from grounded_sam.autolabel.merge import IncompleteShardsError, merge_shards
    from grounded_sam.cli.label import report

    try:
        summary = merge_shards(
            args.out,
            formats=args.formats,
            shards=args.shards,
            allow_partial=args.allow_partial,
            progress=not args.no_progress,
        )
    except IncompleteShardsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INCOMPLETE
    skipped = report(summary, as_json=args.json)
    if summary.missing:
        left = sum(summary.missing.values())
        print(
            f"warning: partial merge: {left} image(s) of unfinished shard(s) "
            f"{', '.join(summary.missing)} are not in the exports",
            file=sys.stderr,
        )
    return EXIT_SKIPPED if skipped and args.fail_on_skip else EXIT_OK
