"""SAM image encoder: segment_anything's fp32 forward against grounded_sam's optimize_sam.

    python benchmarks/bench_sam_encoder.py [--model vit_b] [--repeats 3] [--threads 2]

Runs every variant alternately in one process on the same module (optimize_sam / restore_sam
swap the module classes, the weights are the same tensors) and prints the median seconds,
the ratio to the fp32 reference, achieved GFLOP/s against the matmul ceiling measured in
the same run, the relative L2 error of the image embeddings and the IoU of masks decoded
from them. Then, in child processes: peak memory of each variant alone, and the fast
variant with and without the glibc malloc settings of grounded_sam.runtime.MALLOC_ENV.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets sys.path for grounded_sam when run from a checkout)

VARIANTS = ("reference fp32", "reference bf16-autocast", "ours fp32", "ours bf16")
BOXES = 8


def _variant_fns(sam, x, names: list[str], outputs: dict) -> dict[str, Callable[[], None]]:
    import torch

    from grounded_sam.segmenters.fast_sam import optimize_sam, restore_sam

    enc = sam.image_encoder

    def make(name: str) -> Callable[[], None]:
        ours, dtype = name.startswith("ours"), name.split()[-1]
        autocast = dtype.startswith("bf16")

        def fn() -> None:
            if ours:
                optimize_sam(sam, dtype="fp32" if dtype == "fp32" else "bf16")
            else:
                restore_sam(sam)
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
                y = enc(x)
            outputs[name] = y.float()

        return fn

    return {name: make(name) for name in names}


def _prepare(sam, image):
    import torch
    from segment_anything.utils.transforms import ResizeLongestSide

    resize = ResizeLongestSide(sam.image_encoder.img_size)
    resized = resize.apply_image(image)
    t = torch.as_tensor(resized).permute(2, 0, 1)[None].float()
    return sam.preprocess(t), resize, tuple(resized.shape[:2])


def _boxes(image_hw: tuple[int, int], n: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w = image_hw
    xy = rng.uniform([0, 0], [w * 0.7, h * 0.7], (n, 2))
    wh = rng.uniform(0.1, 0.3, (n, 2)) * [w, h]
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def _masks(sam, emb, boxes, resize, input_hw, original_hw):
    """Masks (N, H, W) bool decoded from embeddings ``emb`` for xyxy boxes (original px)."""
    import torch

    with torch.inference_mode():
        b = torch.as_tensor(resize.apply_boxes(boxes, original_hw))
        sparse, dense = sam.prompt_encoder(points=None, boxes=b, masks=None)
        low, _ = sam.mask_decoder(
            image_embeddings=emb,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        return sam.postprocess_masks(low, input_hw, original_hw)[:, 0] > sam.mask_threshold


def _iou(a, b) -> list[float]:
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return [1.0 if u == 0 else float(i / u) for i, u in zip(inter, union, strict=True)]


def attention_ablation(sam, repeats: int) -> None:
    """One global-attention layer of ``sam`` three ways, fp32 and bf16: SAM's explicit
    attention matrix, SDPA with the rel-pos bias as a materialised mask, SDPA with the bias
    folded into q.k (what optimize_sam uses for global blocks)."""
    import torch

    from grounded_sam.segmenters import fast_sam

    blk = next(b for b in sam.image_encoder.blocks if b.window_size == 0)
    attn = blk.attn
    side = sam.image_encoder.img_size // 16
    dim = attn.qkv.in_features
    heads = attn.num_heads
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, side, side, dim, generator=g)
    with torch.inference_mode():
        qkv = attn.qkv(x).reshape(1, side * side, 3, heads, -1).permute(2, 0, 3, 1, 4)
        fns: dict[str, Callable[[], object]] = {}
        outs: dict[str, torch.Tensor] = {}
        for dt in (torch.float32, torch.bfloat16):
            name = "fp32" if dt == torch.float32 else "bf16"
            q, k, v = (t.to(dt) for t in qkv.unbind(0))
            r_q = q.reshape(heads, side * side, -1)

            def explicit(q=q, k=k, v=v, r_q=r_q, name=name):
                from segment_anything.modeling.image_encoder import add_decomposed_rel_pos

                a = (q[0] * attn.scale) @ k[0].transpose(-2, -1)
                rh, rw = attn.rel_pos_h.to(q.dtype), attn.rel_pos_w.to(q.dtype)
                a = add_decomposed_rel_pos(a, r_q, rh, rw, (side, side), (side, side))
                outs[f"explicit {name}"] = a.softmax(-1) @ v[0]

            def masked(q=q, k=k, v=v, name=name):
                o = fast_sam._attend_masked(attn, q, k, v, (side, side))
                outs[f"SDPA + mask {name}"] = o.transpose(1, 2)[0]

            def folded(q=q, k=k, v=v, name=name):
                o = fast_sam._attend_folded(attn, q, k, v, (side, side))
                outs[f"SDPA folded {name}"] = o.transpose(1, 2)[0]

            fns[f"explicit {name}"] = explicit
            fns[f"SDPA + mask {name}"] = masked
            fns[f"SDPA folded {name}"] = folded
        times = common.time_alternating(fns, repeats, warmup=1)
    ref = outs["explicit fp32"].float()
    print(f"\n   one global attention layer ({heads} heads, {side * side} tokens), median:")
    for name, ts in times.items():
        err = float((outs[name].float() - ref).norm() / ref.norm())
        print(
            f"   {name:22s} {common.median(ts) * 1e3:8.1f} ms   rel L2 vs explicit fp32 {err:.1e}"
        )


def child(args: argparse.Namespace) -> None:
    """One variant alone in this process: prints JSON with its median time and peak RSS."""
    if args.tune_malloc:
        from grounded_sam import runtime

        runtime.tune_malloc()
    common.set_threads(args.threads)
    sam = common.build_sam(args.model)
    x, _, _ = _prepare(sam, common.synthetic_image())
    base = common.rss_mib()
    outputs: dict = {}
    fn = _variant_fns(sam, x, [args.child], outputs)[args.child]
    times = common.time_alternating({args.child: fn}, args.child_repeats, warmup=1)
    result = {
        "variant": args.child,
        "median_s": common.median(times[args.child]),
        "times": times[args.child],
        "base_rss_mib": base,
        "peak_rss_mib": common.peak_rss_mib(),
    }
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="vit_b", choices=common.SAM_MODELS)
    p.add_argument("--repeats", type=int, default=3, help="timed rounds (after 1 warm-up)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--no-memory", action="store_true", help="skip the per-variant memory runs")
    p.add_argument("--no-malloc", action="store_true", help="skip the malloc env comparison")
    p.add_argument("--no-ablation", action="store_true", help="skip the attention ablation")
    p.add_argument("--malloc-rounds", type=int, default=2)
    p.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--child-repeats", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--tune-malloc", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return

    import torch

    threads = common.set_threads(args.threads)
    ceilings = common.print_header(f"SAM image encoder, {args.model}, 1024x1024", threads)
    with torch.device("meta"):  # count FLOPs without computing
        meta = _meta_sam(args.model)
    gflop = (
        common.model_flops(lambda: meta.image_encoder(torch.empty(1, 3, 1024, 1024, device="meta")))
        / 1e9
    )
    print(f"   model work: {gflop:.0f} GFLOP per image (FlopCounterMode, reference encoder)")

    sam = common.build_sam(args.model)
    image = common.synthetic_image()
    x, resize, input_hw = _prepare(sam, image)
    names = list(dict.fromkeys(["reference fp32", *args.variants]))
    outputs: dict = {}
    fns = _variant_fns(sam, x, names, outputs)
    print(f"   timing {len(names)} variants alternately, 1 warm-up + {args.repeats} rounds ...")
    times = common.time_alternating(fns, args.repeats, warmup=1)

    ref_t = common.median(times["reference fp32"])
    ref = outputs["reference fp32"]
    boxes = _boxes(image.shape[:2], BOXES)
    ref_masks = _masks(sam, ref, boxes, resize, input_hw, image.shape[:2])
    print()
    print(
        f"{'variant':26s} {'median':>9s} {'vs ref':>8s} {'GFLOP/s':>8s} {'of ceiling':>16s} "
        f"{'rel L2':>9s} {'mask IoU mean/min':>18s}"
    )
    for name in names:
        t = common.median(times[name])
        out = outputs[name]
        rel = float((out - ref).norm() / ref.norm())
        ious = _iou(_masks(sam, out, boxes, resize, input_hw, image.shape[:2]), ref_masks)
        short = "bf16" if "bf16" in name else "fp32"
        ceil_name = "bfloat16" if short == "bf16" else "float32"
        achieved = gflop / t
        print(
            f"{name:26s} {common.fmt_s(t)} {ref_t / t:7.2f}x {achieved:8.0f} "
            f"{achieved / ceilings[ceil_name]:7.0%} of {short} "
            f"{rel:9.2e} {sum(ious) / len(ious):9.4f}/{min(ious):.4f}"
        )
    raw = "  ".join(f"{n}: " + ",".join(f"{s:.2f}" for s in times[n]) for n in names)
    print(f"   raw seconds per round: {raw}")
    if "ours bf16" in names:
        t = common.median(times["ours bf16"])
        print(
            f"   ours bf16: {ref_t / t:.2f}x faster than reference fp32; "
            f"{gflop / t / ceilings['bfloat16']:.0%} of the bf16 matmul ceiling "
            f"(the limit would be {gflop / ceilings['bfloat16']:.2f} s)"
        )

    if not args.no_ablation:
        attention_ablation(sam, args.repeats)

    script = str(Path(__file__).resolve())
    base = [script, "--model", args.model, "--threads", str(threads)]
    if not args.no_memory:
        print("\n   peak memory, each variant alone in a child process (1 warm-up + 1 run):")
        for name in ("reference fp32", "ours bf16"):
            r = common.run_child([*base, "--child", name])
            print(
                f"   {name:26s} peak RSS {r['peak_rss_mib']:7.0f} MiB "
                f"(+{r['peak_rss_mib'] - r['base_rss_mib']:.0f} MiB over the built model)"
            )
    if not args.no_malloc:
        from grounded_sam import runtime

        env = runtime.malloc_env()
        label = " ".join(f"{k}={v}" for k, v in env.items())
        print(f"\n   ours bf16 in child processes, alternately: default malloc / {label} / ")
        print("   runtime.tune_malloc() called at start (mallopt, same settings):")
        configs = {
            "default malloc": ([], None),
            "env vars": ([], env),
            "tune_malloc()": (["--tune-malloc"], None),
        }
        runs: dict[str, list[float]] = {key: [] for key in configs}
        for _ in range(args.malloc_rounds):
            for key, (flags, extra) in configs.items():
                cmd = [*base, "--child", "ours bf16", "--child-repeats", str(args.repeats), *flags]
                runs[key] += common.run_child(cmd, extra)["times"]
        d = common.median(runs["default malloc"])
        print(
            "   "
            + "   ".join(
                f"{key} {common.fmt_s(common.median(ts))} ({d / common.median(ts):.2f}x)"
                for key, ts in runs.items()
            )
        )


def _meta_sam(model: str):
    from segment_anything import sam_model_registry

    return sam_model_registry[model](checkpoint=None)


if __name__ == "__main__":
    main()
