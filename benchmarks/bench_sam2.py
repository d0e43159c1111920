"""SAM 2.1 on this CPU: sam2's reference against Sam2Segmenter, next to our SAM vit_b.

    python benchmarks/bench_sam2.py [--models sam2.1_hiera_tiny sam2.1_hiera_base_plus]
        [--boxes 16] [--repeats 3] [--threads 2] [--size 768 1024] [--amg 0]

Full-size SAM 2.1 architectures (``grounded_sam.segmenters.sam2_loading``) with seeded random
weights, and a full-size SAM vit_b (``common.build_sam``). For each SAM 2.1 model the
reference and ours run alternately in one process (median seconds, ratio of medians):

- encoder: ``SAM2ImagePredictor.set_image(image)`` vs ``Sam2Segmenter.embed(image)`` (cache
  cleared before each call, so both encode);
- N-box decoder: ``SAM2ImagePredictor.predict(box=boxes, multimask_output=False)`` on a set
  image vs ``Sam2Segmenter.segment(image, detections)`` on a cached embedding (ours also
  hashes the image to find it); the masks and scores are checked to be identical;
- automatic masks (``--amg P``, P points per side, 0 skips): ``SAM2AutomaticMaskGenerator``
  vs ``Sam2Segmenter.generate`` with every filter off.

SAM vit_b rows: ``SamSegmenter`` exact (default) and ``fast=True`` (the fast encoder and
decoder), same image and boxes. Random weights: only the times mean something.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets sys.path for grounded_sam when run from a checkout)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's description."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


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


def _boxes(image_hw: tuple[int, int], n: int, seed: int = 0) -> Any:
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w = image_hw
    wh = rng.uniform(0.05, 0.6, (n, 2)) * [w, h]
    xy = rng.uniform(0, 1, (n, 2)) * ([w, h] - wh)
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def _dets(boxes: Any, hw: tuple[int, int]) -> Any:
    import numpy as np

    from grounded_sam.types import Detections

    n = len(boxes)
    return Detections(
        xyxy=boxes,
        scores=np.ones(n, np.float32),
        phrases=[""] * n,
        class_id=np.zeros(n, np.int64),
        image_size=hw,
    )


def _row(label: str, times: dict[str, list[float]], ref: str, ours: str, note: str = "") -> None:
    r, o = common.median(times[ref]), common.median(times[ours])
    print(f"   {label:<34} {common.fmt_s(r)} {common.fmt_s(o)}  x{r / o:5.2f}  {note}")


def bench_sam2(model_type: str, args: argparse.Namespace, image: Any, boxes: Any) -> None:
    import numpy as np
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from grounded_sam.segmenters.sam2 import Sam2Segmenter

    model = build_sam2(model_type)
    predictor, seg = SAM2ImagePredictor(model), Sam2Segmenter(model)
    hw = image.shape[:2]

    def ref_encode() -> None:
        predictor.set_image(image)

    def our_encode() -> None:
        seg.clear_cache()
        seg.embed(image)

    times = common.time_alternating({"ref": ref_encode, "ours": our_encode}, args.repeats)
    _row(f"{model_type} encoder", times, "ref", "ours")

    predictor.set_image(image)
    seg.embed(image)
    dets = _dets(boxes, hw)
    times = common.time_alternating(
        {
            "ref": lambda: predictor.predict(box=boxes, multimask_output=False),
            "ours": lambda: seg.segment(image, dets),
        },
        args.repeats,
    )
    masks, ious, _ = predictor.predict(box=boxes, multimask_output=False)
    out = seg.segment(image, dets)
    same = np.array_equal(out.masks, masks[:, 0]) and np.array_equal(out.mask_scores, ious[:, 0])
    _row(f"{model_type} {len(boxes)}-box decoder", times, "ref", "ours", f"identical: {same}")

    if args.amg:
        opts = dict(points_per_side=args.amg, pred_iou_thresh=0.0, stability_score_thresh=0.0)
        generator = SAM2AutomaticMaskGenerator(model, **opts)
        results: dict[str, Any] = {}

        def ref_amg() -> None:
            results["ref"] = generator.generate(image)

        def our_amg() -> None:
            seg.clear_cache()
            results["ours"] = seg.generate(image, **opts)

        times = common.time_alternating({"ref": ref_amg, "ours": our_amg}, 1, warmup=0)
        ref_masks = np.stack([r["segmentation"] for r in results["ref"]])
        note = common.mask_agreement(results["ours"].masks, ref_masks, min_iou=1.0)
        _row(f"{model_type} automatic, {args.amg}^2 points", times, "ref", "ours", note)


def bench_sam(args: argparse.Namespace, image: Any, boxes: Any) -> None:
    from grounded_sam.segmenters.sam import SamSegmenter

    segs = {
        "exact": SamSegmenter(common.build_sam("vit_b")),
        "fast": SamSegmenter(common.build_sam("vit_b"), fast=True),
    }

    def encode(seg: Any) -> Any:
        def fn() -> None:
            seg.clear_cache()
            seg.embed(image)

        return fn

    times = common.time_alternating({k: encode(s) for k, s in segs.items()}, args.repeats)
    _row("SAM vit_b encoder (exact | fast)", times, "exact", "fast")
    dets = _dets(boxes, image.shape[:2])
    for seg in segs.values():
        seg.embed(image)
    times = common.time_alternating(
        {k: (lambda s=s: s.segment(image, dets)) for k, s in segs.items()}, args.repeats
    )
    _row(f"SAM vit_b {len(boxes)}-box decoder (exact | fast)", times, "exact", "fast")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["sam2.1_hiera_tiny", "sam2.1_hiera_base_plus"])
    p.add_argument("--boxes", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--size", type=int, nargs=2, default=[768, 1024], metavar=("H", "W"))
    p.add_argument("--amg", type=int, default=0, help="points per side (0: skip)")
    p.add_argument("--no-sam", action="store_true", help="skip the SAM vit_b rows")
    args = p.parse_args(argv)

    threads = common.set_threads(args.threads)
    common.print_header("SAM 2.1: sam2 reference vs Sam2Segmenter; SAM vit_b alongside", threads)
    image = common.synthetic_image(tuple(args.size))
    boxes = _boxes(image.shape[:2], args.boxes)
    print(f"   CPU: {cpu_model()} ({os.cpu_count()} logical cores)")
    print(f"   image {args.size[0]}x{args.size[1]}, {args.repeats} repeats, medians")
    print(f"   {'':<34} {'reference':>9} {'ours':>9}  ratio")
    for model_type in args.models:
        bench_sam2(model_type, args, image, boxes)
    if not args.no_sam:
        bench_sam(args, image, boxes)


if __name__ == "__main__":
    main()
