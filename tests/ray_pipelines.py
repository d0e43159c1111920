"""Pipeline recipes for the Ray tests: imported by the Ray workers (the test puts this folder
on their PYTHONPATH), so that each actor builds the real tiny random pipeline itself.

``CountedPipeline`` is that pipeline, unchanged in results and configuration, which also
appends one line per call to a file (whichever process calls it: the count of real pipeline
calls across all actors), can sleep before each call, and can end its own process the first
time it is given an image of a chosen height (a worker that dies mid-run).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

CLASSES = ["cat", "dog"]


class CountedPipeline:
    def __init__(self, pipeline, calls: Path, delay: float = 0.0, die_on_height: int = 0):
        self.pipeline = pipeline
        self.segmenter = pipeline.segmenter
        self.calls, self.delay, self.die_on_height = Path(calls), delay, die_on_height

    def __call__(self, image, prompt, classes=None):
        marker = self.calls.with_suffix(".died")
        if image.shape[0] == self.die_on_height and not marker.exists():
            marker.write_text(f"{os.getpid()}\n")
            os._exit(1)  # the actor's process ends here, its image unfinished
        time.sleep(self.delay)
        out = self.pipeline(image, prompt, classes=classes)
        with open(self.calls, "a", encoding="utf-8") as f:  # O_APPEND: one whole line a call
            f.write(f"{os.getpid()} {image.shape[0]}x{image.shape[1]}\n")
        return out

    def config(self):
        return self.pipeline.config()


def tiny(**options):
    """The tiny random pipeline every test here compares against."""
    import grounded_sam as gs

    return gs.Pipeline.tiny_random(CLASSES, top_k=2, **options)


def counted(calls: str, delay: float = 0.0, die_on_height: int = 0) -> CountedPipeline:
    return CountedPipeline(tiny(), Path(calls), delay, die_on_height)
