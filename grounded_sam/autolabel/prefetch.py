"""Decoding ahead: a thread reads the next images while the model works on the current one."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from grounded_sam.autolabel.sources import ImageItem
from grounded_sam.errors import ImageError

THREAD_NAME = "grounded-sam-decode"
_END = object()


def decode(item: ImageItem) -> tuple[Any, str | None]:
    """``(image, None)`` with ``image`` RGB uint8 (H, W, 3), or ``(None, reason)`` when
    ``item`` cannot be read. Every engine decodes with this (the local prefetch thread, the
    Ray engine's read tasks), so an image fails with the same reason everywhere."""
    from grounded_sam.image import load_image

    if item.refused is not None:
        return None, item.refused
    try:
        return load_image(item.path), None
    except ImageError as exc:
        return None, exc.reason
    except Exception as exc:  # any decoder failure is this image's problem only
        return None, f"{type(exc).__name__}: {exc}"


def prefetch(items: Sequence[ImageItem], depth: int) -> Iterator[tuple[ImageItem, Any, str | None]]:
    """Yield ``(item, image or None, error reason or None)`` in order; a thread decodes up to
    ``depth`` images ahead so that decoding overlaps inference while memory stays bounded.

    ``image`` is RGB uint8 (H, W, 3). Closing the generator (or an exception in the consumer)
    stops the thread.
    """
    slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(value: Any) -> None:
        while not stop.is_set():
            try:
                slots.put(value, timeout=0.1)
                return
            except queue.Full:
                continue

    def work() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                put((item, *decode(item)))
        finally:
            put(_END)  # whatever happens here, the consumer is not left waiting

    thread = threading.Thread(target=work, name=THREAD_NAME, daemon=True)
    thread.start()
    try:
        while (value := slots.get()) is not _END:
            yield value
    finally:
        stop.set()
        thread.join(timeout=10)
