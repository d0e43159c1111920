"""CPU time of a full-size Grounding DINO (Swin-T + BERT-base) forward at 800x1333.

Random weights: the arithmetic is that of IDEA-Research/grounding-dino-tiny, no download
needed. Measures fp32 and bf16 autocast side by side through ``GroundingDinoDetector``
(median of ``--runs`` forwards after one warm-up), prints the ratio and how many detections
above the box threshold agree between the two; then the Swin backbone's share of a forward,
which is what a long vocabulary saves per extra chunk (``vocab_chunks.reuse_backbone``).

    python benchmarks/bench_grounding_dino.py [--threads 2] [--runs 3] [--size 800 1333]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch


def median_time(fn, runs: int) -> tuple[float, float, object]:
    """(median wall seconds, median process CPU seconds, last output) after one warm-up.

    CPU seconds (all threads together) stay meaningful on a busy machine where wall time
    does not; with ``--threads N`` an idle machine's wall time is about CPU / N.
    """
    out = fn()  # warm-up
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, nargs=2, default=(800, 1333), metavar=("H", "W"))
    parser.add_argument("--box-threshold", type=float, default=0.35)
    args = parser.parse_args()

    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    from grounded_sam.detectors.grounding_dino import GroundingDinoDetector
    from grounded_sam.detectors.phrases import Prompt, PromptTokens
    from grounded_sam.geometry import box_iou
    from grounded_sam.testing.grounding_dino import tiny_grounding_dino_processor

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = args.size
    with tempfile.TemporaryDirectory() as vocab_dir:
        # the tiny vocabulary's ids (< 1100) fit BERT-base's 30522-entry embedding
        processor = tiny_grounding_dino_processor(vocab_dir)
    processor.image_processor.size = {"shortest_edge": 800, "longest_edge": 1333}
    config = GroundingDinoConfig()  # Swin-T backbone, BERT-base text encoder, 900 queries
    model = GroundingDinoForObjectDetection(config).eval()
    n_params = sum(p.numel() for p in model.parameters())
    det = GroundingDinoDetector(model, processor, box_threshold=args.box_threshold)

    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    prompt = Prompt.from_classes("cat . dog . traffic light . person . car")
    tokens = PromptTokens.from_tokenizer(processor.tokenizer, prompt)
    pixels, size = det.preprocess_image(image)
    print(
        f"Grounding DINO Swin-T/BERT-base, random weights, {n_params / 1e6:.1f} M parameters; "
        f"image {h}x{w} -> model input {tuple(pixels['pixel_values'].shape[-2:])}; "
        f"{len(tokens)} text tokens; torch {torch.__version__}, {args.threads} threads"
    )

    def fp32():
        return det.forward(pixels, tokens)

    def bf16():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return det.forward(pixels, tokens)

    t32, c32, (p32, b32) = median_time(fp32, args.runs)
    t16, c16, (p16, b16) = median_time(bf16, args.runs)
    print(f"fp32 forward:          median {t32:7.2f} s wall, {c32:7.2f} s CPU ({args.runs} runs)")
    print(f"bf16 autocast forward: median {t16:7.2f} s wall, {c16:7.2f} s CPU ({args.runs} runs)")
    print(f"bf16 / fp32 ratio: {t16 / t32:.2f} wall, {c16 / c32:.2f} CPU")

    d32 = det.postprocess(p32, b32, tokens, size)
    d16 = det.postprocess(p16, b16, tokens, size)
    # Agreement by geometry, not by query index: two-stage query selection may order the
    # same proposals differently under bf16.
    iou = box_iou(d32.xyxy, d16.xyxy)
    match = iou.argmax(1) if len(d16) else np.zeros(len(d32), dtype=np.int64)
    best = iou.max(1) if len(d16) else np.zeros(len(d32))
    same_class = d16.class_id[match] == d32.class_id if len(d16) else np.zeros(len(d32), bool)
    agree = int(((best >= 0.9) & same_class).sum())
    print(
        f"detections above box_threshold {args.box_threshold}: fp32 {len(d32)}, bf16 {len(d16)}; "
        f"fp32 boxes with a bf16 box of IoU >= 0.9 and the same class: {agree} "
        f"({agree / max(len(d32), 1):.0%}); with IoU >= 0.5: {int((best >= 0.5).sum())}"
    )

    backbone = model.model.backbone

    def backbone_only():
        with torch.inference_mode():
            return backbone(pixels["pixel_values"], pixels["pixel_mask"])

    tb, cb, _ = median_time(backbone_only, args.runs)
    print(
        f"Swin backbone alone: median {tb:.2f} s wall, {cb:.2f} s CPU = {cb / c32:.0%} of an "
        "fp32 forward's CPU time (saved per extra chunk of a long vocabulary)"
    )


if __name__ == "__main__":
    main()
