"""S3-FIFO (``httpcache.s3fifo``): byte bound, scan resistance, ghost readmission."""

from __future__ import annotations

import pytest

from httpcache.s3fifo import S3FIFO


def unit(_value: object) -> int:
    return 1


def test_byte_bound_holds_with_mixed_sizes() -> None:
    cache: S3FIFO[str, bytes] = S3FIFO(100, len)
    for i in range(200):
        cache[f"k{i}"] = b"x" * (i % 37 + 1)
        assert cache.currsize <= 100
    assert sum(len(cache.peek(k) or b"") for k in cache.keys()) == cache.currsize


def test_every_eviction_is_reported_once() -> None:
    evicted: list[str] = []
    cache: S3FIFO[str, int] = S3FIFO(10, unit, lambda k, _v: evicted.append(k))
    for i in range(50):
        cache[f"k{i}"] = i
    assert len(evicted) == 40 and len(set(evicted)) == 40
    assert not set(evicted) & set(cache.keys())


def test_a_scan_does_not_flush_the_hot_set() -> None:
    cache: S3FIFO[str, int] = S3FIFO(100, unit)
    hot = [f"hot{i}" for i in range(50)]
    for _round in range(3):
        for key in hot:
            if cache.get(key) is None:
                cache[key] = 1
    for i in range(10_000):  # one-hit wonders
        cache[f"scan{i}"] = 1
    assert all(key in cache for key in hot)


def test_a_key_evicted_unread_comes_back_into_main_from_the_ghost() -> None:
    cache: S3FIFO[str, int] = S3FIFO(10, unit)
    cache["a"] = 1
    for i in range(10):
        cache[f"k{i}"] = 1
    assert "a" not in cache
    cache["a"] = 1  # remembered in the ghost queue: admitted to main
    for i in range(10, 30):
        cache[f"k{i}"] = 1
    assert "a" in cache


def test_replace_keeps_position_and_frequency() -> None:
    cache: S3FIFO[str, int] = S3FIFO(10, unit)
    cache["a"] = 1
    cache.get("a")
    cache.replace("a", 2)
    assert cache.peek("a") == 2 and cache.currsize == 1


def test_pop_and_reinsert_with_another_size() -> None:
    cache: S3FIFO[str, bytes] = S3FIFO(100, len)
    cache["a"] = b"x" * 10
    cache["a"] = b"x" * 30
    assert cache.currsize == 30
    assert cache.pop("a") == b"x" * 30 and cache.currsize == 0 and "a" not in cache
    assert cache.pop("a") is None


def test_value_larger_than_the_cache_is_refused_with_the_numbers() -> None:
    cache: S3FIFO[str, bytes] = S3FIFO(10, len)
    with pytest.raises(ValueError, match="11 bytes.*10"):
        cache["a"] = b"x" * 11


def test_invalid_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="0"):
        S3FIFO(0, unit)
