"""The fast paths on a CUDA GPU: the same answers as the reference paths, and their speed.

    python benchmarks/check_cuda.py                 # needs a CUDA device; ~2-3 minutes
    python benchmarks/check_cuda.py --device cpu --quick   # the same checks, small, on a CPU

CI has no GPU, so this is a script, not a test. Full-size architectures with seeded random
weights (as in the other benchmarks), every variant run alternately in one process, CUDA
synchronised around each timed call. Printed per part: median milliseconds, speed-up over
the reference, and how the outputs agree:

- SAM vit_b image encoder, 1024x1024: segment_anything fp32 against ``optimize_sam`` in
  fp32 / bf16 / fp16 (relative L2 of the embedding against the reference);
- SAM mask decoder, 16 boxes: ``SamSegmenter`` default (SAM's decoder) against
  ``fast_decoder=True`` in fp32 / bf16 (mask IoU against the default's masks);
- automatic masks, 16 points per side on 512x512: ``SamAutomaticMaskGenerator`` against
  ``SamSegmenter(fast=True)`` (masks matched at IoU >= 0.9, with NMS off);
- Grounding DINO Swin-T at 800x1333: transformers fp32 against
  ``GroundingDinoDetector(fast=True)`` (detections above 0.35 matched at IoU >= 0.9).

``--quick`` shrinks the parts (4 points, Grounding DINO at 400x600, fewer
repeats) to check that the script and the code paths run, not to measure.
"""

from __future__ import annotations

import argparse
import copy
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_grounding_dino  # noqa: E402
import common  # noqa: E402  (sets sys.path for grounded_sam when run from a checkout)


def timed(fns: dict[str, Callable[[], Any]], device: Any, repeats: int) -> dict[str, float]:
    """Median milliseconds of each function, called alternately after one warm-up each,
    with the device synchronised around each call."""
    import torch

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    times = common.time_alternating(fns, repeats, sync=sync)
    return {k: common.median(v) * 1e3 for k, v in times.items()}


def report(title: str, ms: dict[str, float], notes: dict[str, str]) -> None:
    ref = next(iter(ms.values()))
    print(f"\n-- {title}")
    for name, t in ms.items():
        print(f"   {name:<22} {t:9.1f} ms  {ref / t:6.2f}x  {notes.get(name, '')}")


def rel_l2(a: Any, b: Any) -> float:
    a, b = a.float(), b.float()
    return float((a - b).norm() / b.norm().clamp(min=1e-12))


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pair IoU of two aligned (N, H, W) bool stacks."""
    inter = (a & b).reshape(len(a), -1).sum(1)
    union = (a | b).reshape(len(a), -1).sum(1)
    return inter / np.maximum(union, 1)


def sam_encoder(sam: Any, device: Any, size: int, repeats: int) -> None:
    import torch

    from grounded_sam.segmenters.fast_sam import optimize_sam

    x = torch.randn(1, 3, size, size, device=device, generator=None)
    fast = {dt: optimize_sam(copy.deepcopy(sam), dtype=dt) for dt in ("fp32", "bf16", "fp16")}
    with torch.inference_mode():
        ref = sam.image_encoder(x)
        fns = {"segment_anything fp32": lambda: sam.image_encoder(x)}
        notes = {}
        for dt, model in fast.items():
            fns[f"ours {dt}"] = lambda m=model: m.image_encoder(x)
            notes[f"ours {dt}"] = f"rel L2 {rel_l2(model.image_encoder(x), ref):.2e}"
        ms = timed(fns, device, repeats)
    report(f"SAM vit_b image encoder, {size}x{size}", ms, notes)


def sam_decoder(sam: Any, device: Any, image: np.ndarray, repeats: int) -> None:
    import torch

    from grounded_sam.segmenters.sam import SamSegmenter

    rng = np.random.default_rng(0)
    h, w = image.shape[:2]
    wh = rng.uniform(0.05, 0.6, (16, 2)) * [w, h]
    xy = rng.uniform(0, 1, (16, 2)) * ([w, h] - wh)
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    segs = {
        "default (SAM's decoder)": SamSegmenter(sam, device=device),
        "fast fp32": SamSegmenter(sam, device=device, fast_decoder=True, decoder_dtype="fp32"),
        "fast bf16": SamSegmenter(sam, device=device, fast_decoder=True, decoder_dtype="bf16"),
    }
    emb = segs["default (SAM's decoder)"].embed(image)

    def masks(seg: Any) -> np.ndarray:
        low, _ = seg.decode(emb, boxes=boxes)
        return (seg.upscale_masks(low, emb) > seg.mask_threshold)[:, 0].cpu().numpy()

    with torch.inference_mode():
        base = masks(segs["default (SAM's decoder)"])
        notes = {}
        for name, seg in segs.items():
            iou = mask_iou(masks(seg), base)
            notes[name] = f"mask IoU vs default min {iou.min():.4f} mean {iou.mean():.4f}"
        ms = timed({k: lambda s=s: masks(s) for k, s in segs.items()}, device, repeats)
    report("SAM mask decoder, 16 boxes, decode + upscale + threshold", ms, notes)


def automatic_masks(sam: Any, device: Any, image: np.ndarray, points: int, repeats: int) -> None:
    from segment_anything import SamAutomaticMaskGenerator

    from grounded_sam.segmenters.sam import SamSegmenter

    settings = dict(points_per_side=points, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    ref_gen = SamAutomaticMaskGenerator(sam, **settings)
    ours = SamSegmenter(copy.deepcopy(sam), device=device, cache_size=0, fast=True)
    fns = {
        "segment_anything": lambda: ref_gen.generate(image),
        "ours fast (auto dtype)": lambda: ours.generate(image, **settings),
    }
    ms = timed(fns, device, repeats)
    loose = dict(settings, box_nms_thresh=1.0)
    ref = np.stack(
        [r["segmentation"] for r in SamAutomaticMaskGenerator(sam, **loose).generate(image)]
    )
    mine = ours.generate(image, **loose).masks
    note = f"NMS off: {common.mask_agreement(mine, ref)}"
    report(
        f"automatic masks, {points} points/side, {image.shape[1]}x{image.shape[0]}",
        ms,
        {"ours fast (auto dtype)": note},
    )


def grounding_dino(device: Any, size: tuple[int, int], repeats: int) -> None:
    import torch

    from grounded_sam.detectors.grounding_dino import GroundingDinoDetector
    from grounded_sam.detectors.phrases import Prompt, PromptTokens

    model, processor = common.build_grounding_dino(size)
    ref = GroundingDinoDetector(model, processor, device=device)
    ours = GroundingDinoDetector(copy.deepcopy(model), processor, fast=True)
    image = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    prompt = Prompt.from_classes("cat . dog . traffic light . person . car")
    tokens = PromptTokens.from_tokenizer(processor.tokenizer, prompt)
    pixels, hw = ref.preprocess_image(image)
    with torch.inference_mode():
        outs = {}

        def run(name: str, det: Any) -> None:
            outs[name] = det.forward(pixels, tokens)

        ms = timed(
            {
                "transformers fp32": lambda: run("ref", ref),
                "ours fast (auto dtype)": lambda: run("ours", ours),
            },
            device,
            repeats,
        )
    d_ref = ref.postprocess(*outs["ref"], tokens, hw)
    n_ref, n_ours, agree9, _ = bench_grounding_dino.agreement(
        d_ref, ref.postprocess(*outs["ours"], tokens, hw)
    )
    note = f"detections {n_ref} vs {n_ours}; IoU >= 0.9 and same class: {agree9}/{n_ref}"
    report(f"Grounding DINO Swin-T, {size[0]}x{size[1]}", ms, {"ours fast (auto dtype)": note})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="small sizes: check that it runs")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument(
        "--parts",
        nargs="+",
        default=["encoder", "decoder", "gdino", "amg"],
        choices=["encoder", "decoder", "gdino", "amg"],
    )
    args = p.parse_args()

    import torch

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run with --device cpu --quick to check the script")
    repeats = args.repeats or (2 if args.quick else 6)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"== fast paths on {name}; torch {torch.__version__}; {repeats} timed rounds")
    sam = common.build_sam("vit_b", seed=0).to(device)
    image = common.synthetic_image((384, 512) if args.quick else (768, 1024), seed=0)
    small = common.synthetic_image((256, 256) if args.quick else (512, 512), seed=1)
    parts = {
        "encoder": lambda: sam_encoder(sam, device, 1024, repeats),
        "decoder": lambda: sam_decoder(sam, device, image, repeats),
        "gdino": lambda: grounding_dino(
            device, (400, 600) if args.quick else (800, 1333), max(1, repeats // 2)
        ),
        "amg": lambda: automatic_masks(
            sam, device, small, 4 if args.quick else 16, max(1, repeats // 3)
        ),
    }
    failed = 0
    for part in args.parts:
        try:
            parts[part]()
        except Exception:  # report and go on: one broken part must not hide the others
            failed += 1
            print(f"\n-- {part}: FAILED")
            traceback.print_exc(file=sys.stdout)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
