"""One image, end to end: SAM's encoder plus N box prompts, SamPredictor against `fast`.

    python benchmarks/bench_sam_image.py [--boxes 16] [--repeats 3] [--threads 2]
        [--model vit_b] [--size 768 1024] [--precision fast]

What a user's call costs when the image is new: the reference is segment_anything's
``SamPredictor.set_image(image)`` then ``predict_torch(boxes=..., multimask_output=False)``
(what Grounded-SAM's demo code does); ours is ``SamSegmenter(sam, precision=...).segment(image,
detections)`` on a deep copy of the same seeded full-size model, with its embedding cache
emptied before every call so the encoder runs each time. Alternately in one process, after
one warm-up each; prints medians, the speed-up and how the masks agree (IoU per box, against
the reference's).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from bench_sam_decoder import _agreement  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boxes", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="vit_b", choices=common.SAM_MODELS)
    parser.add_argument("--size", type=int, nargs=2, default=(768, 1024), metavar=("H", "W"))
    parser.add_argument("--precision", default="fast", help="ours' precision (default fast)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch
    from segment_anything import SamPredictor

    from grounded_sam.segmenters.sam import SamSegmenter

    threads = common.set_threads(args.threads)
    common.print_header(
        f"SAM {args.model}, one {args.size[0]}x{args.size[1]} image, encoder + {args.boxes} "
        f"boxes: SamPredictor vs precision={args.precision!r}",
        threads,
    )
    h, w = args.size
    sam = common.build_sam(args.model, seed=args.seed)
    image = common.synthetic_image((h, w), seed=args.seed)
    boxes = common.random_boxes((h, w), args.boxes, args.seed)
    dets = common.box_detections(boxes, (h, w))
    predictor = SamPredictor(sam)
    seg = SamSegmenter(copy.deepcopy(sam), precision=args.precision)
    outputs = {}

    def reference() -> None:
        with torch.inference_mode():
            predictor.set_image(image)
            boxes_t = predictor.transform.apply_boxes_torch(torch.from_numpy(boxes), (h, w))
            masks, iou, _ = predictor.predict_torch(
                None, None, boxes=boxes_t, multimask_output=False
            )
        outputs["reference"] = (masks[:, 0].numpy(), iou[:, 0].numpy())

    def ours() -> None:
        seg.cache.clear()  # a new image each time: the encoder runs
        out = seg.segment(image, dets)
        outputs["ours"] = (out.masks, out.mask_scores)

    times = common.time_alternating({"reference": reference, "ours": ours}, args.repeats)
    ref_s, ours_s = common.median(times["reference"]), common.median(times["ours"])
    print(f"   reference (set_image + predict_torch): median {ref_s:.2f} s")
    print(
        f"   ours ({args.precision}): median {ours_s:.2f} s, {ref_s / ours_s:.2f}x; "
        + _agreement(*outputs["ours"], *outputs["reference"])
    )
    raw = "  ".join(f"{k}: " + ",".join(f"{t:.2f}" for t in v) for k, v in times.items())
    print(f"   raw seconds per round: {raw}")


if __name__ == "__main__":
    main()
