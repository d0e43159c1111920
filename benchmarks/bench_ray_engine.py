"""Folder labelling: the local engine vs ``engine="ray"`` with 1 and 2 actors, same folder.

    python benchmarks/bench_ray_engine.py [--sizes 8 24] [--repeat 2]

Tiny random models (``Pipeline.tiny_random``, seeded: every engine writes the same files),
images 480x640 of seeded noise. One local Ray instance (all this machine's CPUs) serves
every Ray run; its start-up is timed apart. Each run labels into a new folder; the time is
the whole ``auto_label`` call given the same recipe (building the pipeline: once for the
local engine, once per actor plus once to record its configuration for Ray; labelling;
exports). With two folder sizes, the slope is the time per image and the
intercept the fixed cost of a run: the per-image overhead Ray adds is its slope minus the
local engine's.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["cat", "dog"]


def make_images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(
            folder / f"img{i:03d}.jpg", quality=90
        )
    return folder


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs=2, default=[8, 24])
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    import ray
    import torch

    import grounded_sam as gs

    cpus = os.cpu_count() or 1
    torch.set_num_threads(cpus)
    recipe = functools.partial(gs.Pipeline.tiny_random, CLASSES, top_k=2)
    engines = {
        f"local ({cpus} threads)": {},
        f"ray, 1 actor x {cpus} CPUs": dict(engine="ray", actors=1, num_cpus_per_actor=cpus),
        f"ray, {cpus} actors x 1 CPU": dict(engine="ray", actors=cpus, num_cpus_per_actor=1),
    }
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders = {n: make_images(root / f"images{n}", n) for n in args.sizes}
        started = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        print(f"ray.init (local instance, {cpus} CPUs): {time.perf_counter() - started:.1f} s")
        seconds: dict[tuple[str, int], list[float]] = {}
        runs = 0
        for rep in range(args.repeat):
            for name, kw in engines.items():
                for n, folder in folders.items():
                    runs += 1
                    out = root / f"out{runs}"
                    call = functools.partial(
                        gs.auto_label,
                        recipe,
                        folder,
                        CLASSES,
                        out,
                        formats="coco",
                        progress=False,
                        **kw,
                    )
                    t = timed(call)
                    seconds.setdefault((name, n), []).append(t)
                    print(f"  rep {rep}: {name:28s} {n:3d} images {t:6.1f} s", flush=True)
        ray.shutdown()
    small, big = args.sizes
    print(f"\n{'engine':28s} {'images/min':>11s} {'s/image':>8s} {'fixed s':>8s}  (median)")
    base = None
    for name in engines:
        t_small = statistics.median(seconds[(name, small)])
        t_big = statistics.median(seconds[(name, big)])
        per_image = (t_big - t_small) / (big - small)
        fixed = t_small - per_image * small
        base = per_image if base is None else base
        print(
            f"{name:28s} {60 * big / t_big:11.1f} {per_image:8.3f} {fixed:8.1f}"
            f"  per image vs local: {per_image - base:+.3f} s"
        )
    print(f"images/min over the {big}-image folder, whole call included")


if __name__ == "__main__":
    main()
