"""Shared helpers for the benchmarks: fair timing, machine ceilings, memory, seeded models.

Benchmarks are run by hand (``python benchmarks/bench_*.py``); they are not tests and assert
nothing about time. The rules every script follows:

- reference and ours run **alternately in one process** (ref, ours, ref, ours, ...), so a
  noisy neighbour or a frequency change hits both; we print medians and the ratio of medians;
- the machine's matmul ceiling (fp32 and bf16, 4096^2) is measured in the same run, and the
  achieved GFLOP/s of each variant is printed against it;
- peak memory is the peak resident set size (``VmHWM``) of a child process that runs
  one variant only, so one variant's peak does not hide another's;
- models are full-size architectures from the real libraries with seeded random weights:
  the arithmetic is that of the trained models, the outputs are meaningless.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: `python benchmarks/x.py`
    sys.path.insert(0, str(ROOT))

SAM_MODELS = ("vit_b", "vit_l", "vit_h")


def set_threads(n: int | None) -> int:
    """Set torch's intra-op threads (None: leave torch's default); returns the count in use."""
    import torch

    if n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def time_alternating(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    sync: Callable[[], Any] | None = None,
) -> dict[str, list[float]]:
    """Wall-clock seconds of each function, called round-robin ``repeats`` times.

    Each function first runs ``warmup`` times (also round-robin, not timed): first calls
    allocate buffers and create oneDNN primitives. ``sync`` (e.g. ``torch.cuda.synchronize``)
    runs before and after each timed call, so asynchronous device work is counted.
    Returns name -> list of seconds.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if sync is not None:
                sync()
            start = time.perf_counter()
            fn()
            if sync is not None:
                sync()
            times[name].append(time.perf_counter() - start)
    return times


def mask_agreement(ours: Any, ref: Any, min_iou: float = 0.9) -> str:
    """How many of ``ref``'s masks have a mask in ``ours`` with IoU >= ``min_iou``.

    ``ours`` (M, H, W) and ``ref`` (N, H, W) bool arrays; each reference mask is paired with
    its best match (IoU by one matrix product). Returns a line for a benchmark's output.
    """
    import torch

    if len(ref) == 0:
        return f"reference has no masks, ours {len(ours)}"
    if len(ours) == 0:
        return f"0/{len(ref)} masks matched (ours: none)"
    a = torch.from_numpy(ref.reshape(len(ref), -1)).float()
    b = torch.from_numpy(ours.reshape(len(ours), -1)).float()
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1)[None] - inter
    best = (inter / union.clamp(min=1)).max(1).values
    return (
        f"{int((best >= min_iou).sum())}/{len(ref)} masks matched at IoU>={min_iou}"
        f" (mean best IoU {best.mean():.4f}, ours {len(ours)})"
    )


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def matmul_gflops(dtype_name: str = "float32", n: int = 4096, repeats: int = 3) -> float:
    """Best-of-``repeats`` GFLOP/s of an n x n @ n x n matmul in ``dtype_name`` (the ceiling)."""
    import torch

    dtype = getattr(torch, dtype_name)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    with torch.inference_mode():
        a @ b
        best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this process's own
    memory. ``getrusage().ru_maxrss`` is the fallback elsewhere; on Linux it is wrong for a
    child started by fork+exec, which inherits the parent's RSS as its starting maximum.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024 if sys.platform != "darwin" else kib / 2**20


def rss_mib() -> float:
    """Current resident set size of this process, MiB (0 where /proc is missing)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_sam(model: str = "vit_b", seed: int = 0) -> Any:
    """A full-size segment_anything Sam with seeded random weights, in eval mode.

    ``build_sam_vit_*(checkpoint=None)`` leaves the relative and absolute position
    embeddings at zero, which would make the relative-position bias trivially zero; they
    are filled with seeded normal noise (std 0.02 for pos_embed, 0.1 for rel_pos) so the
    bias path is exercised like a trained model's.
    """
    import torch
    from segment_anything import sam_model_registry

    if model not in SAM_MODELS:
        raise ValueError(f"model must be one of {SAM_MODELS}, got {model!r}")
    torch.manual_seed(seed)
    sam = sam_model_registry[model](checkpoint=None)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in sam.image_encoder.named_parameters():
            if name.endswith(("rel_pos_h", "rel_pos_w")):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif name == "pos_embed":
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return sam.eval()


def build_grounding_dino(
    size: tuple[int, int] = (800, 1333), seed: int = 0, words: Sequence[str] = ()
) -> tuple[Any, Any]:
    """``(model, processor)``: transformers' ``GroundingDinoForObjectDetection`` with its
    default configuration (Swin-T + BERT-base: grounding-dino-tiny's architecture), seeded
    random weights, eval mode; the processor resizes to ``size`` (shortest, longest edge) and
    its tokenizer is the tiny test vocabulary (its ids, < 1100, fit BERT-base's embedding)
    plus ``words``."""
    import tempfile

    import torch
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    from grounded_sam.testing.grounding_dino import tiny_grounding_dino_processor

    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as vocab_dir:  # the tokenizer reads it at once
        processor = tiny_grounding_dino_processor(vocab_dir, words)
    processor.image_processor.size = {"shortest_edge": size[0], "longest_edge": size[1]}
    model = GroundingDinoForObjectDetection(GroundingDinoConfig()).eval()
    return model, processor


def build_clip(model_name: str = "ViT-B-32", seed: int = 0) -> tuple[Any, Any, Any]:
    """``(model, preprocess, tokenizer)``: a full-size open_clip model with seeded random
    weights (no download: open_clip ships the tokenizer's vocabulary), eval mode."""
    import open_clip
    import torch

    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
    return model.eval(), preprocess, open_clip.get_tokenizer(model_name)


def synthetic_image(size: tuple[int, int] = (768, 1024), seed: int = 0) -> Any:
    """A seeded uint8 RGB image (H, W, 3) of smooth shapes on a gradient: not noise, so
    masks decoded from it have structure."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx / w * 200, yy / h * 200, (xx + yy) / (h + w) * 120], -1)
    for _ in range(12):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = rng.uniform(0.05, 0.2) * min(h, w)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        img[inside] = rng.uniform(0, 255, 3)
    return img.clip(0, 255).astype(np.uint8)


def random_boxes(image_hw: tuple[int, int], n: int, seed: int = 0) -> Any:
    """n seeded xyxy boxes (N, 4) float32 in original pixels, 5% to 60% of each side, inside."""
    import numpy as np

    rng = np.random.default_rng(seed)
    h, w = image_hw
    wh = rng.uniform(0.05, 0.6, (n, 2)) * [w, h]
    xy = rng.uniform(0, 1, (n, 2)) * ([w, h] - wh)
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def box_detections(boxes: Any, image_hw: tuple[int, int]) -> Any:
    """``Detections`` of xyxy ``boxes`` (N, 4) float32: score 1, one class "box"."""
    import numpy as np

    from grounded_sam.types import Detections

    n = len(boxes)
    return Detections(
        xyxy=boxes,
        scores=np.ones(n, np.float32),
        phrases=["box"] * n,
        class_id=np.zeros(n, np.int64),
        image_size=image_hw,
    )


def model_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of one call of ``fn`` as counted by torch's FlopCounterMode (matmuls, convs,
    attention). Build the model on the meta device to count without computing."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def run_child(args: Sequence[str], env_extra: Mapping[str, str] | None = None) -> dict:
    """Run ``python <args>`` in a fresh process; its last stdout line must be JSON.

    Used where a setting only exists at process start (malloc environment variables) and
    to measure one variant's peak memory alone.
    """
    env = dict(os.environ)
    env.update(env_extra or {})
    proc = subprocess.run(
        [sys.executable, *args], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {args} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fmt_s(seconds: float) -> str:
    return f"{seconds:7.3f} s"


def onednn_version() -> str:
    """The oneDNN version torch was built with ("v3.12.0"), from torch's build configuration."""
    import re

    import torch

    match = re.search(r"MKL-DNN (v[\d.]+)", torch.__config__.show())
    return match.group(1) if match else "unknown"


def int8_gops(n: int = 4096, repeats: int = 3) -> float:
    """Best-of-``repeats`` GOP/s of an int8 n x n @ n x n product (``torch._int_mm``), or 0."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randint(-128, 128, (n, n), generator=g, dtype=torch.int8)
    b = torch.randint(-128, 128, (n, n), generator=g, dtype=torch.int8)
    try:
        torch._int_mm(a, b)
    except (RuntimeError, AttributeError):
        return 0.0
    best = min(_timed(lambda: torch._int_mm(a, b)) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def print_header(title: str, threads: int) -> dict[str, float]:
    """Print where the run happens and the matmul ceilings; returns {'float32': .., 'bfloat16': ..,
    'int8': ..} (GFLOP/s, GOP/s for int8).

    Every figure belongs to one CPU kind: the header names the CPU model, its core count, the
    instruction sets that decide the kernels (AVX2, AVX-512, AVX512-BF16, AMX) and any ISA cap
    set in the environment, what ``fast`` computes in here, the torch and oneDNN versions, and
    the fp32 / bf16 / int8 matmul ceilings measured now, in this process.
    """
    from grounded_sam import runtime

    print(f"== {title}")
    for line in runtime.cpu_lines():
        print(f"   {line}")
    print(f"   {runtime.describe()}, oneDNN {onednn_version()}")
    hardware_bf16 = runtime.cpu_has_fast_bf16()
    # emulated bf16 is ~100x slower: a 1024^2 product says as much in a fraction of the time
    ceilings = {
        "float32": matmul_gflops("float32"),
        "bfloat16": matmul_gflops("bfloat16", n=4096 if hardware_bf16 else 1024, repeats=1),
        "int8": int8_gops(),
    }
    bf16_kind = "hardware" if hardware_bf16 else "emulated, 1024^2"
    print(
        f"   matmul ceiling (4096^2, {threads} threads): fp32 {ceilings['float32']:.0f} GFLOP/s, "
        f"bf16 {ceilings['bfloat16']:.0f} GFLOP/s ({bf16_kind}), int8 {ceilings['int8']:.0f} GOP/s"
    )
    return ceilings
