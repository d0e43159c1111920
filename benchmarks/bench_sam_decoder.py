"""SAM mask decoder for N boxes: SamPredictor.predict_torch against SamSegmenter's decoders.

    python benchmarks/bench_sam_decoder.py [--boxes 16] [--repeats 5] [--threads 2]
        [--model vit_b] [--size 768 1024] [--breakdown] [--memory]

One full-size SAM with seeded random weights; the image embedding is computed once up front
(segment_anything's encoder) and given to every variant, so only prompt encoding, mask
decoding, upscaling to the original size and thresholding are timed: the work of
``predict_torch(boxes=..., multimask_output=False)`` for a SamPredictor whose image is set.
The variants run alternately in one process and print the median seconds, the speed-up over
predict_torch, the reference decoder's FLOPs per second of each (against the matmul
ceilings measured in the same run) and how their masks and predicted IoUs agree with
predict_torch's:

- ``predict_torch``: segment_anything's SamPredictor, the reference;
- ``ours default``: ``SamSegmenter(sam).segment(image, detections)`` (bit-identical masks);
- ``ours fast fp32``: ``SamSegmenter(sam, fast_decoder=True, decoder_dtype="fp32")``;
- ``ours fast bf16``: ``SamSegmenter(sam, fast_decoder=True, decoder_dtype="bf16")``.

Ours are timed through the public ``segment`` call, so they also pay for looking the image
up in the embedding cache (hashing its pixels) and for returning numpy masks.
``--breakdown`` also times the low-res decode alone (``mask_decoder`` vs ``seg.decode``);
``--memory`` runs each variant alone in a child process and prints the peak resident memory
its calls add on top of the loaded model and embedding.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets sys.path for grounded_sam when run from a checkout)

OURS = {
    "ours default": {},
    "ours fast fp32": {"fast_decoder": True, "decoder_dtype": "fp32"},
    "ours fast bf16": {"fast_decoder": True, "decoder_dtype": "bf16"},
}
REFERENCE = "predict_torch"


@dataclass
class Setup:
    """Everything the timed calls need, built once."""

    sam: Any
    segs: dict[str, Any]  # name -> SamSegmenter
    emb: Any  # ImageEmbedding, in every segmenter's cache
    boxes: Any  # (N, 4) float32 xyxy, original pixels
    fns: dict[str, Callable[[], Any]]  # variant -> one timed call
    outputs: dict[str, tuple[Any, Any]]  # variant -> (masks (N, H, W) bool, scores (N,))
    prompts: tuple[Any, Any, Any]  # sparse, dense, image_pe for the reference decoder


def _setup(args: argparse.Namespace, features_path: str | None = None) -> Setup:
    """Build the model, the segmenters, the predictor and one call per variant.

    The image embedding is computed with segment_anything's encoder, or loaded from
    ``features_path`` (a child process of ``--memory`` gets the parent's).
    """
    import torch
    from segment_anything import SamPredictor

    from grounded_sam.segmenters.sam import ImageEmbedding, SamSegmenter

    h, w = args.size
    sam = common.build_sam(args.model, seed=args.seed)
    image = common.synthetic_image((h, w), seed=args.seed)
    segs = {name: SamSegmenter(sam, **kw) for name, kw in OURS.items()}
    if features_path is None:
        start = time.perf_counter()
        emb = segs["ours default"].embed(image)  # segment_anything's encoder, fp32, once
        print(f"   image embedding computed once: {time.perf_counter() - start:.1f} s")
    else:
        from grounded_sam.image import image_content_key

        saved = torch.load(features_path, weights_only=True)
        resized = segs["ours default"].transform.get_preprocess_shape(
            h, w, sam.image_encoder.img_size
        )
        emb = ImageEmbedding(saved, tuple(resized), (h, w), image_content_key(image))
    for seg in segs.values():
        seg.cache.put(emb.key, emb)
    predictor = SamPredictor(sam)
    predictor.features = emb.features
    predictor.original_size, predictor.input_size = emb.original_size, emb.input_size
    predictor.is_image_set = True

    boxes = common.random_boxes((h, w), args.boxes, args.seed)
    dets = common.box_detections(boxes, (h, w))
    boxes_t = predictor.transform.apply_boxes_torch(torch.from_numpy(boxes), (h, w))
    with torch.no_grad():
        sparse, dense = sam.prompt_encoder(points=None, boxes=boxes_t, masks=None)
        pe = sam.prompt_encoder.get_dense_pe()
    outputs: dict[str, tuple[Any, Any]] = {}

    def reference() -> None:
        masks, iou, _ = predictor.predict_torch(None, None, boxes=boxes_t, multimask_output=False)
        outputs[REFERENCE] = (masks[:, 0].numpy(), iou[:, 0].numpy())

    def ours(name: str) -> Callable[[], None]:
        def fn() -> None:
            out = segs[name].segment(image, dets)
            outputs[name] = (out.masks, out.mask_scores)

        return fn

    fns = {REFERENCE: reference, **{name: ours(name) for name in OURS}}
    return Setup(sam, segs, emb, boxes, fns, outputs, (sparse, dense, pe))


def _agreement(masks: Any, scores: Any, ref_masks: Any, ref_scores: Any) -> str:
    import numpy as np

    inter = (masks & ref_masks).sum((1, 2))
    union = (masks | ref_masks).sum((1, 2))
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    same = "identical" if np.array_equal(masks, ref_masks) else "differ"
    d_score = float(np.abs(scores - ref_scores).max())
    return (
        f"mask IoU min {iou.min():.4f} mean {iou.mean():.4f} ({same}), "
        f"pixels agree {np.mean(masks == ref_masks):.5f}, |d pred IoU| max {d_score:.1e}"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boxes", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="vit_b", choices=common.SAM_MODELS)
    parser.add_argument("--size", type=int, nargs=2, default=(768, 1024), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--breakdown", action="store_true", help="also time low-res decode alone")
    parser.add_argument("--memory", action="store_true", help="peak memory per variant")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: one variant, JSON out
    parser.add_argument("--features", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    threads = common.set_threads(args.threads)
    if args.child:
        _child(args)
        return
    h, w = args.size
    ceilings = common.print_header(
        f"SAM mask decoder, {args.model}, {args.boxes} boxes, image {h}x{w}", threads
    )
    print(f"   load average {os.getloadavg()[0]:.1f} (other processes share these cores)")
    from grounded_sam import runtime

    if not runtime.cpu_has_fast_bf16():
        print("   note: this CPU has no hardware bf16; the bf16 variant is emulated (slow)")

    s = _setup(args)
    flops = _decoder_flops(s.sam, s.emb.features, *s.prompts)
    times = common.time_alternating(s.fns, args.repeats)
    print(
        f"\n   reference decoder: {flops / 1e9:.1f} GFLOP for {len(s.boxes)} boxes; GFLOP/s "
        "below = these FLOPs / time (ours does fewer)"
    )
    _print_table(times, flops, ceilings, s.outputs)
    if args.breakdown:
        _breakdown(s, args.repeats)
    if args.memory:
        _memory(args, s)


def _decoder_flops(sam, features, sparse, dense, pe) -> float:  # noqa: ANN001
    """FLOPs of segment_anything's mask decoder for these inputs (FlopCounterMode).

    The inputs are detached first: the prompt encoder's no-mask embedding is an expanded
    view of a parameter, which torch's module tracker (used by the counter) cannot hook.
    """
    args = [t.detach() for t in (features, pe, sparse, dense)]
    return common.model_flops(lambda: sam.mask_decoder(*args, multimask_output=False))


def _print_table(
    times: dict[str, list[float]],
    flops: float,
    ceilings: dict[str, float],
    outputs: dict[str, tuple[Any, Any]],
) -> None:
    ref_t = common.median(times[REFERENCE])
    ref_masks, ref_scores = outputs[REFERENCE]
    print(f"   {'variant':16s} {'median':>9s} {'speed-up':>9s} {'GFLOP/s':>8s} {'ceiling':>8s}")
    for name, ts in times.items():
        t = common.median(ts)
        ceiling = ceilings["bfloat16" if name.endswith("bf16") else "float32"]
        gflops = flops / t / 1e9
        line = (
            f"   {name:16s} {common.fmt_s(t)} {ref_t / t:8.2f}x {gflops:8.1f} "
            f"{gflops / ceiling:7.1%}"
        )
        if name != REFERENCE:
            line += "   " + _agreement(*outputs[name], ref_masks, ref_scores)
        print(line)


def _breakdown(s: Setup, repeats: int) -> None:
    """Low-res decode alone: segment_anything's mask_decoder vs SamSegmenter.decode."""
    import torch

    sparse, dense, pe = s.prompts

    def ref() -> None:
        with torch.no_grad():
            s.sam.mask_decoder(s.emb.features, pe, sparse, dense, multimask_output=False)

    fns: dict[str, Callable[[], Any]] = {"mask_decoder": ref}
    for name, seg in s.segs.items():
        fns[name] = lambda seg=seg: seg.decode(s.emb, boxes=torch.from_numpy(s.boxes))
    times = common.time_alternating(fns, repeats)
    ref_t = common.median(times["mask_decoder"])
    print("\n   low-res decode only (no upscaling, no thresholding):")
    for name, ts in times.items():
        t = common.median(ts)
        print(f"   {name:16s} {common.fmt_s(t)} {ref_t / t:8.2f}x")


def _memory(args: argparse.Namespace, s: Setup) -> None:
    """Each variant alone in a child process: peak RSS its calls add to the loaded state."""
    import torch

    print("\n   peak memory added by the calls (each variant alone in a child process):")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "features.pt")
        torch.save(s.emb.features, path)
        base = [__file__, "--features", path, "--threads", str(args.threads)]
        base += ["--boxes", str(args.boxes), "--model", args.model, "--seed", str(args.seed)]
        base += ["--size", *map(str, args.size)]
        for name in s.fns:
            out = common.run_child([*base, "--child", name])
            print(f"   {name:16s} {out['added_mib']:8.0f} MiB")


def _child(args: argparse.Namespace) -> None:
    s = _setup(args, features_path=args.features)
    before = common.rss_mib()
    for _ in range(2):
        s.fns[args.child]()
    print(json.dumps({"added_mib": common.peak_rss_mib() - before}))


if __name__ == "__main__":
    main()
