"""SAM 2.1 on this CPU: sam2's reference against Sam2Segmenter exact and fast, SAM vit_b alongside.

    python benchmarks/bench_sam2.py [--models sam2.1_hiera_tiny sam2.1_hiera_base_plus]
        [--boxes 16] [--repeats 3] [--big-repeats 2] [--threads 2] [--size 768 1024]
        [--amg 16] [--amg-size 512 512]

Full-size SAM 2.1 architectures (``grounded_sam.segmenters.sam2_loading``) with seeded random
weights, and a full-size SAM vit_b (``common.build_sam``). For each SAM 2.1 model three
contenders run alternately in one process (median seconds; ratios are reference / ours):
``sam2``'s ``SAM2ImagePredictor`` / ``SAM2AutomaticMaskGenerator`` ("reference"),
``Sam2Segmenter(model)`` ("exact") and ``Sam2Segmenter(model, fast=True)`` ("fast": bf16
where ``runtime.cpu_has_fast_bf16()``, else fp32; the header says which):

- encoder: ``set_image(image)`` vs ``embed(image)`` (cache cleared before each call);
- N-box decoder: ``predict(box=boxes, multimask_output=False)`` on a set image vs
  ``segment(image, detections)`` on a cached embedding (each segmenter its own). The exact
  masks and scores are checked identical to the reference's; the fast ones (own encoder and
  decoder, end to end) are compared with the exact ones by mask IoU (min / mean);
- automatic masks (``--amg P`` points per side on an ``--amg-size`` image, 0 skips; one
  timed run each): ``SAM2AutomaticMaskGenerator`` vs ``generate`` with every filter off.

SAM vit_b rows: ``SamSegmenter`` exact and ``fast=True`` on the same image, boxes and
automatic-mask settings. ``--big-repeats`` applies to models other than Hiera-T. Random
weights: only the times and the agreement mean something.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets sys.path for grounded_sam when run from a checkout)


def build_sam2(model_type: str, seed: int = 0) -> Any:
    """Full-size SAM 2.1 with seeded random weights; Hiera's position embeddings (zero at
    init) get seeded noise so the windowed-position path works as in a trained model."""
    import torch

    from grounded_sam.segmenters.sam2_loading import SAM2_CONFIGS, build_sam2_model

    torch.manual_seed(seed)
    model = build_sam2_model(**SAM2_CONFIGS[model_type])
    with torch.no_grad():
        model.image_encoder.trunk.pos_embed.normal_(0.0, 0.02)
        model.image_encoder.trunk.pos_embed_window.normal_(0.0, 0.02)
    return model.eval()


def _cell(times: dict[str, list[float]], key: str) -> str:
    return common.fmt_s(common.median(times[key])) if key in times else f"{'-':>9}"


def _ratio(times: dict[str, list[float]], num: str, den: str) -> str:
    if num not in times or den not in times:
        return f"{'':>6}"
    return f"x{common.median(times[num]) / common.median(times[den]):5.2f}"


def _row(label: str, times: dict[str, list[float]], note: str = "") -> None:
    """One line: reference, exact, fast medians; reference/exact, reference/fast (or exact/fast
    where there is no reference)."""
    base = "ref" if "ref" in times else "exact"
    print(
        f"   {label:<32} {_cell(times, 'ref')} {_cell(times, 'exact')} {_cell(times, 'fast')}"
        f"  {_ratio(times, 'ref', 'exact')} {_ratio(times, base, 'fast')}  {note}"
    )


def _iou_note(ours: Any, ref: Any) -> str:
    """min / mean IoU of paired masks (N, H, W) bool."""
    import numpy as np

    a, b = ours.reshape(len(ours), -1), ref.reshape(len(ref), -1)
    union = np.maximum((a | b).sum(1), 1)
    iou = (a & b).sum(1) / union
    return f"fast vs exact mask IoU min {iou.min():.4f} mean {iou.mean():.4f}"


def _encode(seg: Any, image: Any) -> Callable[[], None]:
    def fn() -> None:
        seg.clear_cache()
        seg.embed(image)

    return fn


def bench_sam2(
    model_type: str, args: argparse.Namespace, image: Any, boxes: Any, amg_image: Any
) -> None:
    import numpy as np
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from grounded_sam.segmenters.sam2 import Sam2Segmenter

    repeats = args.repeats if model_type.endswith("tiny") else args.big_repeats
    model = build_sam2(model_type)
    predictor = SAM2ImagePredictor(model)
    segs = {"exact": Sam2Segmenter(model), "fast": Sam2Segmenter(model, fast=True)}
    hw = image.shape[:2]

    def ref_encode() -> None:
        predictor.set_image(image)

    fns = {"ref": ref_encode, **{k: _encode(s, image) for k, s in segs.items()}}
    times = common.time_alternating(fns, repeats)
    _row(f"{model_type} encoder", times, f"fast: {segs['fast'].compute_dtype()}")

    predictor.set_image(image)
    for seg in segs.values():
        seg.embed(image)
    dets = common.box_detections(boxes, hw)
    fns = {"ref": lambda: predictor.predict(box=boxes, multimask_output=False)}
    fns.update({k: (lambda s=s: s.segment(image, dets)) for k, s in segs.items()})
    times = common.time_alternating(fns, repeats)
    masks, ious, _ = predictor.predict(box=boxes, multimask_output=False)
    exact, fast = (segs[k].segment(image, dets) for k in ("exact", "fast"))
    same = np.array_equal(exact.masks, masks[:, 0]) and np.array_equal(
        exact.mask_scores, ious[:, 0]
    )
    note = f"exact identical: {same}; {_iou_note(fast.masks, exact.masks)}"
    _row(f"{model_type} {len(boxes)}-box decoder", times, note)

    if args.amg:
        opts = dict(points_per_side=args.amg, pred_iou_thresh=0.0, stability_score_thresh=0.0)
        generator = SAM2AutomaticMaskGenerator(model, **opts)
        results: dict[str, Any] = {}

        def ref_amg() -> None:
            results["ref"] = generator.generate(amg_image)

        def our_amg(key: str) -> Callable[[], None]:
            def fn() -> None:
                segs[key].clear_cache()
                results[key] = segs[key].generate(amg_image, **opts).masks

            return fn

        fns = {"ref": ref_amg, "exact": our_amg("exact"), "fast": our_amg("fast")}
        times = common.time_alternating(fns, 1, warmup=0)
        ref_masks = np.stack([r["segmentation"] for r in results["ref"]])
        note = (
            f"exact: {common.mask_agreement(results['exact'], ref_masks, min_iou=1.0)}; "
            f"fast: {common.mask_agreement(results['fast'], ref_masks, min_iou=0.9)}"
        )
        _row(f"{model_type} automatic, {args.amg}^2 pts", times, note)


def bench_sam(args: argparse.Namespace, image: Any, boxes: Any, amg_image: Any) -> None:
    from grounded_sam.segmenters.sam import SamSegmenter

    segs = {
        "exact": SamSegmenter(common.build_sam("vit_b")),
        "fast": SamSegmenter(common.build_sam("vit_b"), fast=True),
    }
    times = common.time_alternating(
        {k: _encode(s, image) for k, s in segs.items()}, args.big_repeats
    )
    _row("SAM vit_b encoder", times)
    dets = common.box_detections(boxes, image.shape[:2])
    for seg in segs.values():
        seg.embed(image)
    times = common.time_alternating(
        {k: (lambda s=s: s.segment(image, dets)) for k, s in segs.items()}, args.repeats
    )
    _row(f"SAM vit_b {len(boxes)}-box decoder", times)
    if args.amg:
        opts = dict(points_per_side=args.amg, pred_iou_thresh=0.0, stability_score_thresh=0.0)

        def amg(seg: Any) -> Callable[[], None]:
            def fn() -> None:
                seg.clear_cache()
                seg.generate(amg_image, **opts)

            return fn

        times = common.time_alternating({k: amg(s) for k, s in segs.items()}, 1, warmup=0)
        _row(f"SAM vit_b automatic, {args.amg}^2 pts", times)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["sam2.1_hiera_tiny", "sam2.1_hiera_base_plus"])
    p.add_argument("--boxes", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--big-repeats", type=int, default=2, help="repeats for larger models")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--size", type=int, nargs=2, default=[768, 1024], metavar=("H", "W"))
    p.add_argument("--amg", type=int, default=16, help="points per side (0: skip)")
    p.add_argument("--amg-size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    p.add_argument("--no-sam", action="store_true", help="skip the SAM vit_b rows")
    args = p.parse_args(argv)

    threads = common.set_threads(args.threads)
    title = "SAM 2.1: sam2 reference vs Sam2Segmenter exact and fast; SAM vit_b alongside"
    common.print_header(title, threads)
    image = common.synthetic_image(tuple(args.size))
    amg_image = common.synthetic_image(tuple(args.amg_size), seed=1)
    boxes = common.random_boxes(image.shape[:2], args.boxes)
    print(f"   load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"   image {args.size[0]}x{args.size[1]} (automatic: {args.amg_size[0]}x"
        f"{args.amg_size[1]}), {args.repeats} repeats ({args.big_repeats} for larger models,"
        " 1 for automatic), alternating, medians"
    )
    print(
        f"   {'':<32} {'reference':>9} {'exact':>9} {'fast':>9}  ref/ex ref/fast"
        " (SAM rows: exact/fast)"
    )
    for model_type in args.models:
        bench_sam2(model_type, args, image, boxes, amg_image)
    if not args.no_sam:
        bench_sam(args, image, boxes, amg_image)
    print(f"   load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
