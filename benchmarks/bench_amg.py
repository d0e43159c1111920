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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--points", type=int, nargs="+", default=[16, 32], help="points per side")
    p.add_argument("--repeats", type=int, default=3, help="timed rounds per setting")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument("--size", type=int, default=512, help="image side, pixels")
    p.add_argument("--pred-iou-thresh", type=float, default=0.0)
    p.add_argument("--stability-score-thresh", type=float, default=0.0)
    p.add_argument("--box-nms-thresh", type=float, default=0.7)
    args = p.parse_args(argv)

    import torch
    from segment_anything import SamAutomaticMaskGenerator

    from grounded_sam.segmenters.sam import SamSegmenter

    threads = common.set_threads(args.threads)
    common.print_header(f"Automatic masks, vit_b (random), {args.size}x{args.size}", threads)
    sam = common.build_sam("vit_b", seed=0)
    image = common.synthetic_image((args.size, args.size), seed=0)
    segmenter = SamSegmenter(sam, cache_size=0)  # no cache: every call runs the encoder

    with torch.inference_mode():
        segmenter.embed(image)  # warm-up: oneDNN primitives, allocator
        start, cpu_start = time.perf_counter(), time.process_time()
        segmenter.embed(image)
        encoder_s, encoder_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    print(f"   image encoder alone: {common.fmt_s(encoder_s)} wall, {encoder_cpu:.1f} s CPU")
    thresholds = dict(
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        box_nms_thresh=args.box_nms_thresh,
    )
    print(f"   settings: {thresholds}, others SAM's defaults; {args.repeats} round(s)\n")
    print(
        f"{'points':>8} {'segment_anything':>18} {'grounded_sam':>14} {'ratio':>7}"
        f" {'CPU: s_a':>10} {'ours':>9} {'ratio':>7}  outputs"
    )

    for points in args.points:
        settings = dict(points_per_side=points, **thresholds)
        reference = SamAutomaticMaskGenerator(sam, **settings)
        out: dict = {}
        runs = {
            "ref": lambda reference=reference: reference.generate(image),
            "ours": lambda settings=settings: segmenter.generate(image, **settings),
        }
        wall: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeats):  # alternately, in one process
            for name, fn in runs.items():
                w0, c0 = time.perf_counter(), time.process_time()
                out[name] = fn()
                wall[name].append(time.perf_counter() - w0)
                cpu[name].append(time.process_time() - c0)
        _, verdict = same_masks(out["ours"], out["ref"])
        med = {k: (common.median(wall[k]), common.median(cpu[k])) for k in runs}
        (rw, rc), (ow, oc) = med["ref"], med["ours"]
        print(
            f"{points:>6}^2 {common.fmt_s(rw):>18} {common.fmt_s(ow):>14} {rw / ow:>6.2f}x"
            f" {rc:>9.1f}s {oc:>8.1f}s {rc / oc:>6.2f}x  {verdict}"
        )
        for k in runs:
            print(
                f"{'':>8} {k} runs, wall: {' '.join(f'{t:.1f}' for t in wall[k])}; "
                f"CPU: {' '.join(f'{t:.1f}' for t in cpu[k])}"
            )


if __name__ == "__main__":
    main()
