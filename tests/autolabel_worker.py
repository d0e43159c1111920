"""Run ``auto_label`` with the tiny random pipeline in its own process (for the kill test).

    python tests/autolabel_worker.py IMAGES OUT_DIR [--delay SECONDS]

``--delay`` sleeps after each image's inference, before its result is saved, so that a test
can kill the process part-way through a run. Prints the run summary as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import time

CLASSES = ["cat", "dog"]


class SlowPipeline:
    """The real pipeline, slowed down: the same results and configuration, later."""

    def __init__(self, pipeline, delay: float):
        self.pipeline = pipeline
        self.segmenter = pipeline.segmenter
        self.delay = delay

    def __call__(self, image, prompt, classes=None):
        out = self.pipeline(image, prompt, classes=classes)
        time.sleep(self.delay)
        return out

    def config(self):
        return self.pipeline.config()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("images")
    parser.add_argument("out_dir")
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)  # the same arithmetic in every run of this test

    import grounded_sam as gs

    pipe = gs.Pipeline.tiny_random(CLASSES, top_k=4)
    if args.delay:
        pipe = SlowPipeline(pipe, args.delay)
    summary = gs.auto_label(
        pipe, args.images, CLASSES, args.out_dir, formats=("coco", "yolo", "png"), progress=False
    )
    print(
        json.dumps(
            {**summary.to_dict(), "resumed": summary.run_resumed, "labelled": summary.run_labelled}
        )
    )


if __name__ == "__main__":
    main()
