"""A small thread-safe LRU cache keyed by image content.

The segmenter keeps no "current image": an embedding is a value, looked up here by the hash of
the image's pixels, so two requests on two images can never see each other's embedding.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class LRUCache(Generic[V]):
    """Least-recently-used mapping of ``str`` keys to values, at most ``maxsize`` entries.

    Every method holds a lock, so instances can be shared between threads. ``maxsize=0``
    disables caching (``put`` stores nothing). Values are computed by the caller outside the
    lock; two threads that miss on the same key both compute it and the last ``put`` wins,
    which is harmless because both computed the same value.
    """

    def __init__(self, maxsize: int):
        if maxsize < 0:
            raise ValueError(f"cache maxsize must be >= 0, got {maxsize}")
        self.maxsize = int(maxsize)
        self._data: OrderedDict[str, V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> V | None:
        """The value for ``key`` (now the most recently used), or None."""
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: V) -> None:
        """Store ``value`` under ``key``, evicting the least recently used beyond ``maxsize``."""
        if self.maxsize == 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def keys(self) -> list[str]:
        """Keys from least to most recently used (a snapshot)."""
        with self._lock:
            return list(self._data)

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data
