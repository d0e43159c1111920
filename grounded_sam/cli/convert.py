"""``grounded-sam convert grounding-dino IN.pth OUT_DIR``: an original checkpoint, converted once."""

from __future__ import annotations

import argparse
from typing import Any

from grounded_sam.cli.common import EXIT_CODES, EXIT_OK, Formatter

KINDS = ("grounding-dino",)


def add_convert(commands: Any) -> None:
    p = commands.add_parser(
        "convert",
        help="convert an original Grounding DINO .pth into a from_pretrained folder",
        formatter_class=Formatter,
        epilog=EXIT_CODES,
        description=(
            "Map an original IDEA-Research Grounding DINO checkpoint (groundingdino_swint_ogc.pth,\n"
            "groundingdino_swinb_cogcoor.pth) onto transformers' GroundingDinoForObjectDetection,\n"
            "strictly, and save it with its processor and tokenizer (config.json,\n"
            "model.safetensors, ...). The folder works wherever a model folder does:\n"
            "GroundingDinoDetector.from_pretrained, `label --detector OUT_DIR`, the app.\n"
            "The tokenizer (bert-base-uncased's vocab.txt) is not in the .pth: it comes from\n"
            "--text-encoder or `grounded-sam download bert_base_uncased_tokenizer`.\n\n"
            "examples:\n"
            "  grounded-sam convert grounding-dino models/groundingdino_swint_ogc.pth \\\n"
            "      models/groundingdino-swint-ogc"
        ),
    )
    p.add_argument("kind", choices=KINDS, help="what the checkpoint is")
    p.add_argument("checkpoint", metavar="IN.pth", help="the original checkpoint")
    p.add_argument("out", metavar="OUT_DIR", help="the folder to write")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="the original config file (GroundingDINO_SwinT_OGC.py); default: read the "
        "architecture from the checkpoint",
    )
    p.add_argument(
        "--text-encoder",
        metavar="DIR",
        help="a folder with bert-base-uncased's vocab.txt or tokenizer.json (default: the "
        "models folder's bert-base-uncased-tokenizer/)",
    )
    p.add_argument("--models-dir", metavar="DIR", help="default: $GROUNDED_SAM_MODELS or ./models")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT_DIR")
    p.set_defaults(run=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from grounded_sam.models.grounding_dino_convert import convert_original

    out = convert_original(
        args.checkpoint,
        args.out,
        config=args.config,
        text_encoder=args.text_encoder,
        models_dir=args.models_dir,
        overwrite=args.overwrite,
    )
    print(f"wrote {out} (load it with GroundingDinoDetector.from_pretrained or --detector)")
    return EXIT_OK
