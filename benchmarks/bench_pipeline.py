"""Labelling a folder: a straightforward loop against ``auto_label``, exact and fast models.

Full-size architectures with seeded random weights (SAM ViT-B; the detector is CLIP ViT-B/32
scoring SAM's automatic masks, or Grounding DINO Swin-T/BERT-base), ``--images`` synthetic
JPEGs of varied sizes (about 640x480) in a temporary folder. The models are built once; the
variants then run alternately in one process, one pass over the whole folder each, round
after round (loop, auto_label, auto_label-fast, loop, ...):

- ``loop``: for each file ``load_image(path)`` then ``pipe(image, prompt)``, in sequence: what
  a user writes without the library's folder support;
- ``auto_label``: ``gs.auto_label(pipe, folder, ...)`` writing COCO: a thread decodes the
  next images while the models work (``prefetch=2``), a state record per image (resumable),
  the segmenter's embedding cache cleared after each image;
- ``auto_label-fast``: the same with ``fast=True`` copies of the models (the optimised SAM
  encoder and decoder, and Grounding DINO; bf16 where the CPU has AMX/AVX512-BF16), as
  ``grounded-sam label --fast`` builds them.

Prints images per minute of each variant (median over rounds), its ratio to ``loop``, the
seconds per image spent outside the pipeline's calls (loop: decoding; auto_label: decoding
not hidden by the prefetch thread, RLE-encoding masks into the state records, writing files,
and building the COCO file at the end), the detections per image, and memory: the resident
set after the first and after the last image of every pass (bounded: it must not grow with
the number of images) and the process's peak. Random-weight masks are noisy (~40k runs per
640x480 mask, where a real object's has ~1k), which inflates the RLE part of auto_label.
glibc malloc is tuned first, as ``grounded-sam label`` does (``--no-malloc-tuning``: not).

    python benchmarks/bench_pipeline.py [--detector clip|grounding-dino] [--images 6]
        [--rounds 1] [--threads 2] [--device cpu] [--points-per-side 8] [--top-k 20]
        [--no-fast] [--no-malloc-tuning] [--tiny]

``--tiny`` swaps in the tiny random models of ``Pipeline.tiny_random`` (Grounding DINO's
thresholds at 0, so every image gets ``--top-k`` detections to segment and export): the
pipeline's calls take little time and the seconds per image outside them (the library's own
work per image) can be measured in a minute. Grounding DINO costs 13-30 s per image on 2 cores
(fp32): use e.g. ``--images 3``. With
random weights SAM's automatic masks are near-identical (whole-image), so the CLIP detector
keeps about one detection per image: that run weighs the image encoder and the proposal
decoding; Grounding DINO's gives ``--top-k`` boxes per image to segment.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    build_clip,
    build_grounding_dino,
    build_sam,
    median,
    peak_rss_mib,
    print_header,
    rss_mib,
    set_threads,
    synthetic_image,
)

CLASSES = ["cat", "dog", "person", "car"]
PROMPT = " . ".join(CLASSES)
SIZES = [(480, 640), (640, 480), (512, 768), (600, 800), (427, 640), (720, 960)]  # (H, W)


class Recorded:
    """A pipeline that notes the resident set size after every image and the seconds spent
    inside its calls (delegates the rest)."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.segmenter = pipe.segmenter  # auto_label clears its embedding cache per image
        self.rss: list[float] = []
        self.detections = 0
        self.inside = 0.0

    def __call__(self, image: Any, prompt: str, classes: Any = None) -> Any:
        start = time.perf_counter()
        out = self.pipe(image, prompt, classes=classes)
        self.inside += time.perf_counter() - start
        self.rss.append(rss_mib())
        self.detections += len(out)
        return out

    def config(self) -> dict:
        return self.pipe.config()


def write_images(folder: Path, n: int) -> list[Path]:
    """``n`` seeded synthetic JPEGs (quality 90) of the sizes in :data:`SIZES`, cycled."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img{i:03d}.jpg"
        Image.fromarray(synthetic_image(SIZES[i % len(SIZES)], seed=i)).save(path, quality=90)
        paths.append(path)
    return paths


def build_pipelines(args: argparse.Namespace) -> dict[str, Any]:
    """``{"exact": Pipeline, "fast": Pipeline}`` (no "fast" with ``--no-fast``); the fast one's
    models are deep copies, optimised in place on their first call."""
    import grounded_sam as gs

    device = args.device
    pipes: dict[str, Any] = {}
    kinds = ("exact",) if args.no_fast else ("exact", "fast")
    if args.tiny:  # tiny random models: the models' share is small, the rest is what shows
        detector = "clip" if args.detector == "clip" else "grounding-dino"
        options = {"box_threshold": 0.0, "text_threshold": 0.0} if detector != "clip" else {}
        for kind in kinds:
            pipes[kind] = gs.Pipeline.tiny_random(
                CLASSES,
                detector,
                device=device,
                fast=kind == "fast",
                detector_options=options,
                top_k=args.top_k,
            )
        return pipes
    sam = build_sam("vit_b")
    if args.detector == "clip":
        clip_model, preprocess, tokenizer = build_clip()
        clip_model = clip_model.to(device)  # not modified by either path: shared
        for kind in kinds:
            fast = kind == "fast"
            seg = gs.SamSegmenter(copy.deepcopy(sam) if fast else sam, device=device, fast=fast)
            det = gs.ClipMaskDetector(
                seg,
                clip_model,
                preprocess,
                tokenizer,
                score_threshold=0.0,  # random weights: let every proposal get a class
                background_prompts=(),
                amg_options={
                    "points_per_side": args.points_per_side,
                    "pred_iou_thresh": 0.0,  # random SAM weights fail the default quality
                    "stability_score_thresh": 0.0,
                },
            )
            pipes[kind] = gs.Pipeline(det, seg, top_k=args.top_k)
    else:
        model, processor = build_grounding_dino()
        for kind in kinds:
            fast = kind == "fast"
            seg = gs.SamSegmenter(copy.deepcopy(sam) if fast else sam, device=device, fast=fast)
            det = gs.GroundingDinoDetector(
                copy.deepcopy(model) if fast else model, processor, device=device, fast=fast
            )
            pipes[kind] = gs.Pipeline(det, seg, top_k=args.top_k)
    return pipes


def run_loop(pipe: Recorded, paths: list[Path]) -> float:
    from grounded_sam.image import load_image

    pipe.segmenter.clear_cache()  # earlier rounds saw these images: no cache hits
    start = time.perf_counter()
    for path in paths:
        pipe(load_image(path), PROMPT)
    return time.perf_counter() - start


def run_auto_label(pipe: Recorded, folder: Path, out: Path, n: int) -> float:
    import json

    import grounded_sam as gs

    pipe.segmenter.clear_cache()
    start = time.perf_counter()
    gs.auto_label(pipe, folder, CLASSES, out, formats=("coco",), progress=False)
    seconds = time.perf_counter() - start
    coco = json.loads((out / "annotations.coco.json").read_text())
    assert len(coco["images"]) == n, f"auto_label wrote {len(coco['images'])} of {n} images"
    return seconds


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--detector", choices=("clip", "grounding-dino"), default="clip")
    p.add_argument("--images", type=int, default=6, help="synthetic JPEGs in the folder")
    p.add_argument("--rounds", type=int, default=1, help="timed passes per variant")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 …")
    p.add_argument("--points-per-side", type=int, default=8, help="clip: SAM's proposal grid")
    p.add_argument("--top-k", type=int, default=20, help="detections segmented per image")
    p.add_argument("--no-fast", action="store_true", help="skip the auto_label-fast variant")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="tiny random models (Pipeline.tiny_random) instead of full-size ones: measures "
        "the seconds per image outside the pipeline in seconds, not hours",
    )
    p.add_argument("--no-malloc-tuning", action="store_true", help="leave glibc malloc as is")
    args = p.parse_args(argv)
    if args.images < 1 or args.rounds < 1:
        p.error("--images and --rounds must be >= 1")

    from grounded_sam import runtime

    tuned = False if args.no_malloc_tuning else runtime.tune_malloc()
    threads = set_threads(args.threads)
    print_header(f"labelling a folder: loop vs auto_label, detector {args.detector}", threads)
    load = os.getloadavg()
    started = time.perf_counter()
    pipes = {k: Recorded(v) for k, v in build_pipelines(args).items()}
    what = (
        f"SAM automatic masks ({args.points_per_side}x{args.points_per_side} points) scored by "
        f"CLIP ViT-B/32"
        if args.detector == "clip"
        else "Grounding DINO Swin-T/BERT-base (800x1333 input)"
    )
    what = (
        f"tiny SAM + tiny {args.detector} (Pipeline.tiny_random)"
        if args.tiny
        else f"SAM ViT-B + {what}"
    )
    print(
        f"   {what}, random weights, on {args.device}; top_k {args.top_k}; "
        f"prompt {PROMPT!r}\n"
        f"   {args.images} JPEGs of {', '.join(f'{w}x{h}' for h, w in SIZES[: args.images])}"
        f"{' …' if args.images > len(SIZES) else ''}; {args.rounds} round(s) per variant; "
        f"malloc tuned: {tuned}; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root = Path(tmp)
        paths = write_images(root / "images", args.images)
        variants = {
            "loop": lambda r: run_loop(pipes["exact"], paths),
            "auto_label": lambda r: run_auto_label(
                pipes["exact"], root / "images", root / f"out-exact-{r}", args.images
            ),
        }
        if "fast" in pipes:
            variants["auto_label-fast"] = lambda r: run_auto_label(
                pipes["fast"], root / "images", root / f"out-fast-{r}", args.images
            )
        # warm-up: oneDNN primitives, the fast models' one-time optimisation, allocator
        for pipe in pipes.values():
            run_loop(pipe, paths[:1])
        print(f"   models built and warm in {time.perf_counter() - started:.0f} s")

        seconds: dict[str, list[float]] = {k: [] for k in variants}
        rss: dict[str, list[tuple[float, float]]] = {k: [] for k in variants}
        detections: dict[str, int] = {}
        outside: dict[str, list[float]] = {k: [] for k in variants}
        peak_before = peak_rss_mib()
        for r in range(args.rounds):
            for name, run in variants.items():
                pipe = pipes["fast" if name.endswith("fast") else "exact"]
                pipe.rss, pipe.detections, pipe.inside = [], 0, 0.0
                seconds[name].append(run(r))
                outside[name].append((seconds[name][-1] - pipe.inside) / args.images)
                rss[name].append((pipe.rss[0], pipe.rss[-1]))
                detections[name] = pipe.detections
                print(
                    f"   round {r + 1} {name:<16} {seconds[name][-1]:7.1f} s "
                    f"({args.images * 60 / seconds[name][-1]:5.2f} images/min)",
                    flush=True,
                )

    base = median(seconds["loop"])
    print(f"-- {args.images} images, median of {args.rounds} pass(es) each")
    for name, times in seconds.items():
        med = median(times)
        firsts = " ".join(f"{a:.0f}->{b:.0f}" for a, b in rss[name])
        print(
            f"   {name:<16} {args.images * 60 / med:6.2f} images/min  {med / args.images:6.2f} "
            f"s/image  x{base / med:5.2f} vs loop  {median(outside[name]):5.2f} s/image outside "
            f"the pipeline  {detections[name] / args.images:4.1f} detections/image  "
            f"RSS MiB after image 1->{args.images} per pass: {firsts}"
        )
    load = os.getloadavg()
    print(
        f"   peak RSS {peak_rss_mib():.0f} MiB (after warm-up {peak_before:.0f} MiB); "
        f"load average at end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
        f"total {time.perf_counter() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
