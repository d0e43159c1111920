"""Automatic mask generation: segment_anything's SamAutomaticMaskGenerator against ours.

    python benchmarks/bench_amg.py [--points 16 32] [--repeats 3] [--threads 2] [--size 512]

A full-size ``vit_b`` with seeded random weights, a seeded synthetic ``size`` x ``size`` image,
``points_per_side`` 16 and 32. Random weights predict low IoU and unstable masks, so the
quality thresholds are lowered until masks survive (``--pred-iou-thresh``,
``--stability-score-thresh``; both 0 by default: every mask goes through upscaling,
stability scoring and NMS, the most work either implementation can do). Both run
alternately in one process, each call from the raw image (ours with the embedding cache off,
so the image encoder runs every time, as it does in SamAutomaticMaskGenerator.generate).
Printed: median wall-clock and CPU seconds (``time.process_time``, all threads: less
sensitive to other processes on a shared machine), their ratios, the image encoder's time
alone, and whether the two return the same set of masks with the same predicted IoU.

Variants (``--variants``): ``exact`` = ``SamSegmenter(sam)`` (SAM's own encoder and decoder,
the same masks bit for bit), ``fast-fp32`` = ``SamSegmenter(sam, fast=True, dtype="fp32")``
(optimised encoder and decoder in float32), ``fast-bf16`` = ``SamSegmenter(sam, fast=True)``
(bf16 on CPUs with AMX/AVX512-BF16). The fast variants run on deep copies of the model, so the
reference keeps segment_anything's modules. The fast ones change values by float rounding
(fp32) or bf16 error, so instead of "same masks" they report agreement: of the reference's
masks, how many have a mask of ours with IoU >= 0.9, and the mean best IoU. With random
weights NMS leaves few masks, so agreement is measured on one extra, untimed run per variant
with NMS off (``--agreement-nms 1.0``): every candidate mask that passes the filters.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets sys.path for grounded_sam when run from a checkout)


def same_masks(ours, ref: list[dict]) -> tuple[bool, str]:
    """Whether ``ours`` (Detections) and ``ref`` (SAM's records) hold the same masks."""
    import numpy as np

    if len(ours) != len(ref):
        return False, f"{len(ours)} vs {len(ref)} masks"
    if Counter(m.tobytes() for m in ours.masks) != Counter(
        r["segmentation"].tobytes() for r in ref
    ):
        return False, "different masks"
    mine = sorted(zip((m.tobytes() for m in ours.masks), ours.scores.tolist(), strict=True))
    theirs = sorted((r["segmentation"].tobytes(), r["predicted_iou"]) for r in ref)
    a, b = np.array([s for _, s in mine]), np.array([s for _, s in theirs])
    if not np.allclose(a, b, rtol=1e-5, atol=1e-7):
        return False, "same masks, different predicted IoU"
    return True, f"same {len(ref)} masks"


def agreement(ours, ref: list[dict], min_iou: float = 0.9) -> str:
    """How many of ``ref``'s masks (SAM's records) have a mask in ``ours`` (Detections) with
    IoU >= ``min_iou``."""
    import numpy as np

    h, w = ours.image_size
    theirs = np.stack([r["segmentation"] for r in ref]) if ref else np.zeros((0, h, w), bool)
    return common.mask_agreement(ours.masks, theirs, min_iou)


VARIANTS = ("exact", "fast-fp32", "fast-bf16")


def build_variant(name: str, sam):
    """A SamSegmenter for variant ``name`` without an embedding cache (every call encodes)."""
    import copy

    from grounded_sam.segmenters.sam import SamSegmenter

    if name == "exact":
        return SamSegmenter(sam, cache_size=0)
    dtype = "fp32" if name == "fast-fp32" else None  # None: bf16 where the CPU has it
    return SamSegmenter(copy.deepcopy(sam), cache_size=0, fast=True, dtype=dtype)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--points", type=int, nargs="+", default=[16, 32], help="points per side")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per setting")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--size", type=int, default=512, help="image side, pixels")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--pred-iou-thresh", type=float, default=0.0)
    p.add_argument("--stability-score-thresh", type=float, default=0.0)
    p.add_argument("--box-nms-thresh", type=float, default=0.7)
    p.add_argument(
        "--agreement-nms",
        type=float,
        default=1.0,
        help="box_nms_thresh of the untimed agreement run (1.0: NMS off); -1 skips it",
    )
    args = p.parse_args(argv)

    import torch
    from segment_anything import SamAutomaticMaskGenerator

    threads = common.set_threads(args.threads)
    common.print_header(f"Automatic masks, vit_b (random), {args.size}x{args.size}", threads)
    sam = common.build_sam("vit_b", seed=0)
    image = common.synthetic_image((args.size, args.size), seed=0)
    segmenters = {name: build_variant(name, sam) for name in args.variants}

    for name, segmenter in segmenters.items():
        with torch.inference_mode():
            segmenter.embed(image)  # warm-up: oneDNN primitives, allocator, fast set-up
            start, cpu_start = time.perf_counter(), time.process_time()
            segmenter.embed(image)
            encoder_s, encoder_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        print(
            f"   image encoder alone, {name}: {common.fmt_s(encoder_s)} wall,"
            f" {encoder_cpu:.1f} s CPU"
        )
    thresholds = dict(
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        box_nms_thresh=args.box_nms_thresh,
    )
    print(f"   settings: {thresholds}, others SAM's defaults; {args.repeats} round(s)")
    print("   ratio = segment_anything / variant (higher is faster); CPU = process_time\n")
    print(
        f"{'points':>8} {'variant':<11} {'wall':>9} {'ratio':>7} {'CPU':>8} {'ratio':>7}  outputs"
    )

    for points in args.points:
        settings = dict(points_per_side=points, **thresholds)
        reference = SamAutomaticMaskGenerator(sam, **settings)
        out: dict = {}
        runs = {"segment_anything": lambda reference=reference: reference.generate(image)}
        for name, segmenter in segmenters.items():
            runs[name] = lambda s=segmenter, settings=settings: s.generate(image, **settings)
        wall: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):  # alternately, in one process
            for name, fn in runs.items():
                w0, c0 = time.perf_counter(), time.process_time()
                out[name] = fn()
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
        rw, rc = common.median(wall["segment_anything"]), common.median(cpu["segment_anything"])
        for name in runs:
            w, c = common.median(wall[name]), common.median(cpu[name])
            if name == "segment_anything":
                verdict = f"{len(out[name])} masks"
            elif name == "exact":
                verdict = same_masks(out[name], out["segment_anything"])[1]
            else:
                verdict = agreement(out[name], out["segment_anything"])
            print(
                f"{points:>6}^2 {name:<11} {common.fmt_s(w):>9} {rw / w:>6.2f}x"
                f" {c:>7.1f}s {rc / c:>6.2f}x  {verdict}"
            )
        for name in runs:
            print(
                f"{'':>8} {name} runs, wall: {' '.join(f'{t:.1f}' for t in wall[name])}; "
                f"CPU: {' '.join(f'{t:.1f}' for t in cpu[name])}"
            )
        if args.agreement_nms >= 0:
            loose = dict(settings, box_nms_thresh=args.agreement_nms)
            ref = SamAutomaticMaskGenerator(sam, **loose).generate(image)
            print(f"   agreement run, box_nms_thresh={args.agreement_nms}: {len(ref)} masks")
            for name, segmenter in segmenters.items():
                mine = segmenter.generate(image, **loose)
                verdict = same_masks(mine, ref)[1] if name == "exact" else agreement(mine, ref)
                print(f"{'':>8} {name:<11} {verdict}")


if __name__ == "__main__":
    main()
