"""The LRU cache behind SamSegmenter.embed."""

from __future__ import annotations

import threading

import pytest

from grounded_sam.segmenters.embedding_cache import LRUCache


def test_lru_order_eviction_and_counters():
    cache: LRUCache[int] = LRUCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)  # evicts b
    assert cache.keys() == ["a", "c"]
    assert cache.get("b") is None
    assert "c" in cache and "b" not in cache and len(cache) == 2
    cache.put("a", 10)  # overwrite refreshes
    assert cache.keys() == ["c", "a"] and cache.get("a") == 10
    assert (cache.hits, cache.misses) == (2, 1)
    cache.clear()
    assert len(cache) == 0


def test_size_zero_disables_and_negative_is_refused():
    cache: LRUCache[int] = LRUCache(0)
    cache.put("a", 1)
    assert cache.get("a") is None and len(cache) == 0
    with pytest.raises(ValueError, match=">= 0"):
        LRUCache(-1)


def test_many_threads_never_exceed_the_bound_or_mix_values():
    cache: LRUCache[str] = LRUCache(3)
    errors: list[str] = []

    def work(t: int) -> None:
        for i in range(500):
            key = f"k{(t + i) % 7}"
            cache.put(key, key.upper())
            got = cache.get(key)
            if got is not None and got != key.upper():
                errors.append(f"{key} -> {got}")
            if len(cache) > 3:
                errors.append("over the bound")

    threads = [threading.Thread(target=work, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert len(cache) == 3
