"""S3-FIFO (``httpcache.s3fifo``): byte bound, scan resistance, ghost readmission, and the
same decisions as the plain OrderedDict version of the algorithm."""

from __future__ import annotations

import random
import sys
from collections import OrderedDict
from collections.abc import Callable

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


class ReferenceS3FIFO:
    """The algorithm as first written, with OrderedDicts for queues and the keys themselves
    in the ghost: the deques, lazy pops and hashed ghost must not change a single decision."""

    def __init__(self, maxsize: int, sizeof: Callable[[bytes], int]) -> None:
        self.maxsize, self.sizeof = maxsize, sizeof
        self.small_target = max(1, int(maxsize * 0.10))
        self.entries: dict[str, list[object]] = {}  # key -> [value, size, freq, in_main]
        self.small: OrderedDict[str, None] = OrderedDict()
        self.main: OrderedDict[str, None] = OrderedDict()
        self.ghost: OrderedDict[str, None] = OrderedDict()
        self.bytes = {False: 0, True: 0}
        self.evicted: list[str] = []

    def get(self, key: str) -> None:
        entry = self.entries.get(key)
        if entry is not None and entry[2] < 3:  # type: ignore[operator]
            entry[2] += 1  # type: ignore[operator]

    def put(self, key: str, value: bytes) -> None:
        size = self.sizeof(value)
        entry = self.entries.get(key)
        if entry is not None:
            self.bytes[entry[3]] += size - entry[1]  # type: ignore[index, operator]
            entry[0], entry[1] = value, size
        else:
            in_main = key in self.ghost
            self.ghost.pop(key, None)
            self.entries[key] = [value, size, 0, in_main]
            (self.main if in_main else self.small)[key] = None
            self.bytes[in_main] += size
        while sum(self.bytes.values()) > self.maxsize:
            if self.bytes[False] > self.small_target or not self.main:
                key, _ = self.small.popitem(last=False)
                entry = self.entries[key]
                self.bytes[False] -= entry[1]  # type: ignore[operator]
                if entry[2] >= 1:  # type: ignore[operator]
                    entry[2], entry[3] = 0, True
                    self.main[key] = None
                    self.bytes[True] += entry[1]  # type: ignore[operator]
                    continue
                self.ghost[key] = None
                while len(self.ghost) > max(len(self.entries), 1):
                    self.ghost.popitem(last=False)
            else:
                key, _ = self.main.popitem(last=False)
                entry = self.entries[key]
                if entry[2] > 0:  # type: ignore[operator]
                    entry[2] -= 1  # type: ignore[operator]
                    self.main[key] = None
                    continue
                self.bytes[True] -= entry[1]  # type: ignore[operator]
            del self.entries[key]
            self.evicted.append(key)

    def pop(self, key: str) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            (self.main if entry[3] else self.small).pop(key)
            self.bytes[entry[3]] -= entry[1]  # type: ignore[index, operator]


@pytest.mark.parametrize("seed", range(6))
def test_every_decision_matches_the_reference_algorithm(seed: int) -> None:
    rng = random.Random(seed)
    evicted: list[str] = []
    cache: S3FIFO[str, bytes] = S3FIFO(200, len, lambda k, _v: evicted.append(k))
    reference = ReferenceS3FIFO(200, len)
    for step in range(20_000):
        key = f"k{min(rng.randrange(120), rng.randrange(120))}"  # skewed: some keys hot
        roll = rng.random()
        if roll < 0.45:
            cache.get(key)
            reference.get(key)
        elif roll < 0.85:
            value = b"x" * rng.randrange(1, 30)
            cache[key] = value
            reference.put(key, value)
        else:
            cache.pop(key)
            reference.pop(key)
        assert cache.currsize == sum(reference.bytes.values()), step
    assert evicted == reference.evicted
    assert set(cache.keys()) == set(reference.entries)


def test_popped_entries_do_not_pile_up_in_the_queues() -> None:
    cache: S3FIFO[str, int] = S3FIFO(1000, unit)
    for i in range(10_000):  # never full: only pops ever take entries out
        cache[f"k{i}"] = i
        cache.pop(f"k{i}")
    queued = len(cache._small) + len(cache._main)  # private, but that is the point here
    assert len(cache) == 0 and queued <= 64 + 1 and cache.currsize == 0


def test_a_popped_value_is_released_at_once() -> None:
    cache: S3FIFO[str, object] = S3FIFO(10, unit)
    value = object()
    cache["a"] = value
    cache.pop("a")
    assert sys.getrefcount(value) == 2  # ours and getrefcount's argument: the queue let go


def test_the_ghost_does_not_grow_with_keys_that_came_back() -> None:
    cache: S3FIFO[str, int] = S3FIFO(100, unit)
    came_back = 0
    for i in range(50_000):  # keys evicted unread come back while the ghost remembers them
        key = f"k{i % 130}"
        came_back += cache._ghost._where.get(hash(key)) >= 0
        cache[key] = 1
    ghost = cache._ghost  # private, but its size is the point here
    assert came_back > 5_000
    assert len(ghost._ring) - ghost._head <= 2 * len(ghost) + 4096 + 1
    assert len(ghost) <= len(cache) + 1


def test_a_full_ghost_drops_its_front_in_bulk() -> None:
    cache: S3FIFO[str, int] = S3FIFO(1000, unit)
    for i in range(30_000):  # one-hit wonders: the ghost stays full, its front is dropped
        cache[f"k{i}"] = 1
    ghost = cache._ghost
    assert len(ghost) <= 1001 and len(ghost._ring) <= 2 * 4096 + 1001


def test_without_getsizeof_sizes_come_with_each_put() -> None:
    cache: S3FIFO[str, bytes] = S3FIFO(10, None)
    cache.put("a", b"x", 6)
    cache.put("b", b"y", 6)  # 12 > 10: "a" leaves
    assert "a" not in cache and cache.currsize == 6
    with pytest.raises(TypeError, match="put"):
        cache["c"] = b"z"
