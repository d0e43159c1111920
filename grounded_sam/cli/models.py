"""``grounded-sam download`` and ``grounded-sam info``: fetch model files, see what is here."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from grounded_sam.cli.common import EXIT_CODES, EXIT_OK, Formatter, UsageError


def add_download(commands: Any) -> None:
    p = commands.add_parser(
        "download",
        help="fetch model checkpoints (sha256-verified) into the models folder",
        formatter_class=Formatter,
        epilog=EXIT_CODES,
        description=(
            "Fetch checkpoints listed in the registry, with a progress bar and sha256 check.\n"
            "Files already in place are checked by size and sha256 (this reads them) and\n"
            "fetched again when they differ. This is the only command that uses the network.\n\n"
            "examples:\n"
            "  grounded-sam download --list\n"
            "  grounded-sam download sam_vit_b grounding-dino-tiny"
        ),
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="registry names (see --list)")
    p.add_argument("--all", action="store_true", help="every model of the registry")
    p.add_argument("--list", action="store_true", help="list the models and whether they are here")
    p.add_argument("--models-dir", metavar="DIR", help="default: $GROUNDED_SAM_MODELS or ./models")
    p.add_argument(
        "--force", action="store_true", help="fetch files that are already present and intact"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=cmd_download)


def add_info(commands: Any) -> None:
    p = commands.add_parser(
        "info",
        help="versions, device, bf16 support, and which models are present",
        formatter_class=Formatter,
        epilog=EXIT_CODES,
        description="What this installation can run: versions, device and the model files.",
    )
    p.add_argument("--models-dir", metavar="DIR", help="default: $GROUNDED_SAM_MODELS or ./models")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(run=cmd_info)


def cmd_download(args: argparse.Namespace) -> int:
    from grounded_sam.models import download, registry

    if args.list:
        if args.names or args.all:
            raise UsageError("--list takes no model names and no --all")
        root = registry.models_dir(args.models_dir)
        print(f"models folder: {root}")
        for name, entry in registry.REGISTRY.items():
            here = registry.model_state(entry, root)
            size = download.human_size(entry.size)
            print(f"  {name:<27} {entry.kind:<15} {size:>10}  {here:<8} {entry.description}")
        return EXIT_OK
    if args.all == bool(args.names):
        raise UsageError("give model names, or --all (see `grounded-sam download --list`)")
    names = list(registry.REGISTRY) if args.all else args.names
    entries = [registry.get_entry(n) for n in names]  # unknown names fail before any download
    for entry in entries:
        path = download.download(
            entry, models_dir=args.models_dir, progress=not args.no_progress, force=args.force
        )
        print(f"{entry.name}: {path}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from grounded_sam.runtime import cpu_lines

    info = collect_info(args.models_dir)
    if args.json:
        print(json.dumps(info, indent=2))
        return EXIT_OK
    print("versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    dev = info["device"]
    print(f"device: {dev['default']}" + (f" ({dev['cuda_name']})" if dev["cuda_name"] else ""))
    print(f"bf16: cuda {dev['cuda_bf16']}, cpu hardware {dev['cpu_fast_bf16']}")
    for line in cpu_lines():  # model, instruction sets, what --fast computes in here
        print(line)
    print(f"models folder: {info['models_dir']}")
    for name, model in info["models"].items():
        print(f"  {name:<27} {model['state']:<8} {model['path']}")
    missing = [n for n, m in info["models"].items() if m["state"] == "missing"]
    if missing:
        print(f"fetch a missing model with `grounded-sam download NAME` ({', '.join(missing)})")
    corrupt = [n for n, m in info["models"].items() if m["state"] == "corrupt"]
    if corrupt:
        print(
            "corrupt (a file of another size than the registry's): fetch it again with "
            f"`grounded-sam download NAME` ({', '.join(corrupt)})"
        )
    return EXIT_OK


def collect_info(models_dir: str | None = None) -> dict[str, Any]:
    """Versions, device capabilities and the registry's models present under ``models_dir``."""
    from importlib import metadata

    import torch

    from grounded_sam.models import registry
    from grounded_sam.runtime import cpu_has_fast_bf16, cpu_summary

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
            "cpu": cpu_summary(),
        },
        "models_dir": str(root),
        "models": {
            name: {
                "kind": entry.kind,
                "present": (state := registry.model_state(entry, root)) == "present",
                "state": state,
                "path": str(registry.model_path(entry, root)),
            }
            for name, entry in registry.REGISTRY.items()
        },
    }
