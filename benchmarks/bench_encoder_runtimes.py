"""SAM image encoder in existing inference runtimes against segment_anything and ours.

    python benchmarks/bench_encoder_runtimes.py [--model vit_b] [--repeats 3] [--threads 2]
        [--runtimes openvino,onnxruntime]

Which is fastest for the whole encoder on *this* CPU: segment_anything's fp32 forward (the
reference), grounded_sam's ``optimize_sam`` (what ``fast`` runs: bf16 with fused oneDNN
linears on AMX/AVX512-BF16 CPUs, fp32 elsewhere), OpenVINO (static 1024x1024 shapes, fp32
precision hint, and its own default precision for this CPU) and ONNX Runtime (fp32). Each
runtime's one-time cost (export/convert + compile) is printed apart from the per-image time.
All variants run alternately in one process; agreement is the embedding's relative L2 error
and the IoU of masks decoded from it, against the reference.

The runtimes are optional: ``pip install openvino onnxruntime onnx``; a missing one is
reported and skipped. To see an AVX2-only CPU on a bigger one, cap the ISAs in the
environment (``grounded_sam.runtime.AVX2_CAP_ENV``;
OpenVINO and ONNX Runtime detect the CPU themselves: OpenVINO 2026.4 honours the oneDNN cap
and then fails to compile the encoder (no Softmax kernel), so it cannot be measured that way;
ONNX Runtime ignores the cap and shows as too fast).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402  (sets sys.path for grounded_sam when run from a checkout)
from bench_sam_encoder import BOXES, _boxes, _iou, _masks, _meta_sam, _prepare  # noqa: E402


def _openvino(enc, x, precision: str | None, threads: int) -> tuple[Callable, float]:
    """A compiled OpenVINO encoder (static shape of ``x``) and its convert+compile seconds."""
    import openvino as ov
    import torch

    start = time.perf_counter()
    with torch.inference_mode():
        model = ov.convert_model(enc, example_input=x, input=[tuple(x.shape)])
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = ov.Core().compile_model(model, "CPU", config)
    cost = time.perf_counter() - start
    request = compiled.create_infer_request()

    def run(inp):
        out = request.infer({0: inp.numpy()})
        return torch.from_numpy(next(iter(out.values())).copy())

    return run, cost


def _onnxruntime(enc, x, threads: int, folder: Path) -> tuple[Callable, float]:
    """An ONNX Runtime session over the exported encoder and its export+load seconds."""
    import onnxruntime as ort
    import torch

    start = time.perf_counter()
    path = folder / "encoder.onnx"
    with torch.inference_mode():
        torch.onnx.export(enc, (x,), str(path), input_names=["x"], dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    cost = time.perf_counter() - start

    def run(inp):
        return torch.from_numpy(session.run(None, {"x": inp.numpy()})[0])

    return run, cost


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="vit_b", choices=common.SAM_MODELS)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--runtimes", default="openvino,onnxruntime")
    args = p.parse_args(argv)

    import copy

    import torch

    from grounded_sam.segmenters.fast_sam import optimize_sam

    threads = common.set_threads(args.threads)
    ceilings = common.print_header(
        f"SAM {args.model} image encoder 1024x1024: reference, ours, inference runtimes", threads
    )
    sam = common.build_sam(args.model)
    image = common.synthetic_image()
    x, resize, input_hw = _prepare(sam, image)
    fast = copy.deepcopy(sam)
    optimize_sam(fast)  # what `fast` runs on this CPU (auto dtype)

    def torch_fn(module) -> Callable:
        def run(inp):
            with torch.inference_mode():
                return module(inp).float()

        return run

    fns: dict[str, Callable] = {
        "segment_anything fp32": torch_fn(sam.image_encoder),
        "ours (fast, auto dtype)": torch_fn(fast.image_encoder),
    }
    costs: dict[str, float] = {}
    wanted = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        for name in wanted:
            try:
                if name == "openvino":
                    fns["openvino fp32"], costs["openvino fp32"] = _openvino(
                        sam.image_encoder, x, "f32", threads
                    )
                    fns["openvino default"], costs["openvino default"] = _openvino(
                        sam.image_encoder, x, None, threads
                    )
                elif name == "onnxruntime":
                    fns["onnxruntime fp32"], costs["onnxruntime fp32"] = _onnxruntime(
                        sam.image_encoder, x, threads, Path(tmp)
                    )
                else:
                    print(f"   unknown runtime {name!r}: skipped")
            except ImportError as e:
                print(f"   {name} not installed ({e.name}): skipped; pip install {name}")
            except RuntimeError as e:  # e.g. OpenVINO under an ONEDNN_MAX_CPU_ISA cap
                last = str(e).strip().splitlines()[-1] if str(e).strip() else ""
                print(f"   {name} failed on this CPU, skipped: {last[:200]}")
        outputs: dict[str, torch.Tensor] = {}

        def recorder(name: str, fn: Callable) -> Callable[[], None]:
            def run() -> None:
                outputs[name] = fn(x)

            return run

        print(f"   timing {len(fns)} variants alternately, 1 warm-up + {args.repeats} rounds ...")
        times = common.time_alternating(
            {n: recorder(n, f) for n, f in fns.items()}, args.repeats, warmup=1
        )

    ref_name = "segment_anything fp32"
    ref_t = common.median(times[ref_name])
    ref = outputs[ref_name]
    boxes = _boxes(image.shape[:2], BOXES)
    ref_masks = _masks(sam, ref, boxes, resize, input_hw, image.shape[:2])
    with torch.device("meta"):  # count FLOPs without computing
        meta = _meta_sam(args.model)
    meta_x = torch.empty(1, 3, 1024, 1024, device="meta")
    gflop = common.model_flops(lambda: meta.image_encoder(meta_x)) / 1e9
    print()
    print(
        f"{'variant':26s} {'median':>9s} {'vs ref':>8s} {'GFLOP/s':>8s} {'one-time':>9s} "
        f"{'rel L2':>9s} {'mask IoU mean/min':>18s}"
    )
    for name in fns:
        t = common.median(times[name])
        out = outputs[name]
        rel = float((out - ref).norm() / ref.norm())
        ious = _iou(_masks(sam, out, boxes, resize, input_hw, image.shape[:2]), ref_masks)
        cost = f"{costs[name]:8.1f}s" if name in costs else f"{'-':>9s}"
        print(
            f"{name:26s} {common.fmt_s(t)} {ref_t / t:7.2f}x {gflop / t:8.0f} {cost} {rel:9.2e} "
            f"{sum(ious) / len(ious):9.4f}/{min(ious):.4f}"
        )
    raw = "  ".join(f"{n}: " + ",".join(f"{s:.2f}" for s in times[n]) for n in fns)
    print(f"   raw seconds per round: {raw}")
    print(
        f"   {gflop:.0f} GFLOP per image; fp32 ceiling this run {ceilings['float32']:.0f} GFLOP/s "
        f"(the fp32 limit would be {gflop / ceilings['float32']:.2f} s)"
    )


if __name__ == "__main__":
    main()
