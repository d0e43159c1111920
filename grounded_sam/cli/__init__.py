"""The ``grounded-sam`` command: label a folder, evaluate a labelling, fetch models, inspect.

    grounded-sam label IMAGES -o OUT --classes "cat,dog"     # COCO / YOLO / PNG dataset
    grounded-sam label IMAGES -o OUT ... --shard K/N         # one shard of N (shared OUT)
    grounded-sam merge OUT                                   # the exports, once shards finish
    grounded-sam eval predictions.json ground_truth.json     # COCO AP table
    grounded-sam download sam_vit_b grounding-dino-tiny      # checkpoints into models/
    grounded-sam info                                        # versions, device, models
    grounded-sam convert grounding-dino IN.pth OUT_DIR       # original .pth -> model folder

Exit codes: 0 success; 1 failure (the message says what to do); 2 usage error; 3 ``label
--fail-on-skip`` when some images could not be read; 4 ``merge`` while a shard has not
finished; 130 interrupted (Ctrl-C).

One module per command (:mod:`~.label`, :mod:`~.merge`, :mod:`~.eval`, :mod:`~.models` for
``download`` and ``info``, :mod:`~.convert`); :mod:`~.common` holds the exit codes and
argument types they share. Each module imports what its command needs when the command
runs, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from grounded_sam.cli import convert, label, merge, models
from grounded_sam.cli import eval as eval_command
from grounded_sam.cli.common import (
    DEBUG_ENV,
    EXIT_CODES,
    EXIT_FAILURE,
    EXIT_INCOMPLETE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SKIPPED,
    EXIT_USAGE,
    UsageError,
)
from grounded_sam.cli.models import collect_info

__all__ = [
    "DEBUG_ENV",
    "EXIT_CODES",
    "EXIT_FAILURE",
    "EXIT_INCOMPLETE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SKIPPED",
    "EXIT_USAGE",
    "build_parser",
    "collect_info",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    """The ``grounded-sam`` parser with every sub-command."""
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
    label.add_label(commands)
    merge.add_merge(commands)
    eval_command.add_eval(commands)
    models.add_download(commands)
    models.add_info(commands)
    convert.add_convert(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    from grounded_sam.errors import GroundedSamError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except UsageError as exc:
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
